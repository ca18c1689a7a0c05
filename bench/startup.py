"""How long a `leadtap` command takes to start and answer, beside the floor
it cannot go under: Python itself, Python importing SQLAlchemy (which every
command that reads the database needs: `leads list` reads through its Core
alone), and SQLAlchemy's ORM with leadtap's mapped tables (which the
commands that change leads load).

    .venv/bin/python bench/startup.py [--runs 15]

Each command runs as a fresh process, `--runs` times; the median is printed,
with the targets (`--help` < 150 ms, `leads list` on a small database
< 300 ms). A temporary directory holds a SQLite database made by
`leadtap db upgrade`, with no lead: the figure is the start-up, not a query.

The commands run as an installed leadtap does, from compiled bytecode:
PYTHONDONTWRITEBYTECODE is taken out of their environment, and a first,
untimed run writes the `__pycache__` files (with it set, every run compiled the
54 modules of leadtap that `leads list` loads again, about 50 ms of its figure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """[database]
url = "sqlite:///{db}"

[[owners]]
email = "ana@example.com"
roles = ["sales"]
"""


def timed(command: list[str], runs: int) -> float:
    """The median wall time of ``command``, in milliseconds (one warm-up run first)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, capture_output=True, cwd=ROOT, check=False, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, cwd=ROOT, check=False, env=env)
        times.append((time.perf_counter() - start) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = sys.executable
    leadtap = [python, "-m", "leadtap"]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "leadtap.toml"
        config.write_text(CONFIG.format(db=Path(tmp) / "leadtap.db"))
        subprocess.run([*leadtap, "--config", str(config), "db", "upgrade"], check=True, capture_output=True,
                       cwd=ROOT)
        rows = [
            ("python -c pass", timed([python, "-c", "pass"], args.runs), None),
            ('python -c "import sqlalchemy"', timed([python, "-c", "import sqlalchemy"], args.runs), None),
            ('python -c "import sqlalchemy.orm"', timed([python, "-c", "import sqlalchemy.orm"], args.runs), None),
            ("  + leadtap's mapped tables", timed([python, "-c", "import leadtap.core.store.db"], args.runs), None),
            ("leadtap --help", timed([*leadtap, "--help"], args.runs), 150),
            ("leadtap leads list", timed([*leadtap, "--config", str(config), "leads", "list"], args.runs), 300),
        ]
    floor = rows[1][1]
    print(f"{'command':34} {'median ms':>10} {'vs import sqlalchemy':>21} {'target ms':>10}")
    for name, ms, target in rows:
        print(f"{name:34} {ms:10.0f} {ms / floor:21.2f} {target if target else '':>10}")


if __name__ == "__main__":
    main()
