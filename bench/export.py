"""Export benchmark: one SQLite database with ``--leads`` leads; times
``leadtap leads export`` (CSV, then JSON Lines) into a file, as a separate
process, and its peak memory — beside the same export of a tenth as many
leads, so that flat memory shows as equal peaks.

    .venv/bin/python bench/export.py [--leads 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reminders import fill  # noqa: E402
from leadtap.core.store.engine import Database, upgrade_schema  # noqa: E402

CONFIG = """
[database]
url = "sqlite:///{db}"

[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
roles = ["sales"]
"""


def export(config: Path, fmt: str, target: Path) -> tuple[float, float]:
    """Seconds and the process's peak memory (MB) of one export."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(config), "--log-level", "error",
                                "leads", "export", "--format", fmt, "--output", str(target)],
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def database(work: Path, leads: int) -> Path:
    config = work / f"leadtap-{leads}.toml"
    config.write_text(CONFIG.format(db=work / f"bench-{leads}.db"))
    db = Database(f"sqlite:///{work / f'bench-{leads}.db'}")
    upgrade_schema(db.engine)
    db.dispose()
    subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), "--log-level", "error", "check"],
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)  # the owners, ids 1 and 2
    fill(work / f"bench-{leads}.db", leads, 0)
    return config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="leadtap-bench-"))
    small, large = database(work, args.leads // 10), database(work, args.leads)
    print(f"leads:                 {args.leads} (and {args.leads // 10} beside)")
    for fmt in ("csv", "jsonl"):
        seconds_small, peak_small = export(small, fmt, work / f"small.{fmt}")
        seconds, peak = export(large, fmt, work / f"large.{fmt}")
        size = (work / f"large.{fmt}").stat().st_size / 1e6
        print(f"{fmt:<6} export:          {seconds:.1f} s, {args.leads / seconds:,.0f} leads/s, {size:.0f} MB; "
              f"peak memory {peak:.0f} MB ({peak_small:.0f} MB for a tenth as many)")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
