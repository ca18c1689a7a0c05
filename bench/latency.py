"""Push latency: from an IMAP APPEND to the lead committed, with `leadtap run`
waiting in IDLE (the poll interval a minute, so polling explains nothing),
over 200 messages arriving one by one into a local Dovecot; SQLite.

    .venv/bin/python bench/latency.py [-n 200]

Prints p50, p95 and the largest. Target: p95 < 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imapclient import IMAPClient  # noqa: E402

from bench.ingest import CONFIG, TEMPLATE, notification  # noqa: E402
from leadtap.dovecot import Dovecot  # noqa: E402


def leads(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        return connection.execute("select count(*) from leads").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200, help="messages (default 200)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="leadtap-latency-"))
    db, config, log = work / "bench.db", work / "leadtap.toml", work / "run.log"
    rng = random.Random(11)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Dovecot(tls=False) as server:
        config.write_text(CONFIG.format(template=TEMPLATE, db=db, port=server.port, password=server.password,
                                        batch=100, parallel="true", extra="").replace('templates = ["contact-form"]',
                                                                 'templates = ["contact-form"]\npoll_interval = "60s"'))
        subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), "db", "upgrade"], check=True,
                       capture_output=True, env=env)
        worker = subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(config), "run"],
                                  stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)
        took = []
        try:
            while '"idle_started"' not in log.read_text():
                time.sleep(0.05)
            time.sleep(0.5)
            with IMAPClient(server.host, port=server.port, ssl=False) as client:
                client.login("bench", server.password)
                for i in range(args.n):
                    raw = notification(i, rng)
                    started = time.perf_counter()
                    client.append("INBOX", raw)
                    while leads(db) < i + 1:
                        time.sleep(0.005)
                    took.append(time.perf_counter() - started)
                    print(f"\r{i + 1}/{args.n}", end="", file=sys.stderr, flush=True)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    print(file=sys.stderr)
    took_ms = sorted(t * 1000 for t in took)
    print(f"messages:              {args.n}, one by one, each appended once the previous one was a lead")
    print(f"APPEND to lead:        p50 {statistics.median(took_ms):.0f} ms, "
          f"p95 {took_ms[int(len(took_ms) * 0.95) - 1]:.0f} ms, max {took_ms[-1]:.0f} ms  (target p95 < 1 s)")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}, SQLite, Dovecot on loopback")


if __name__ == "__main__":
    main()
