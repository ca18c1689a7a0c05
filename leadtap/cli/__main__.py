"""``python -m leadtap.cli``, as ``leadtap``."""

import sys

from leadtap.cli import main

sys.exit(main())
