import sys

from leadtap.cli import main

sys.exit(main())
