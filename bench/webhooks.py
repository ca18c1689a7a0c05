"""Webhook benchmark: ``--events`` events owed to one endpoint (each a
different lead's, so the in-order claim is exercised), a local receiver in
its own process answering 200; prints deliveries per second as
``leadtap run`` sends them (claim, sign, POST over a kept-alive
connection, record), called until nothing is owed.

    .venv/bin/python bench/webhooks.py [--events 10000]

Target: at least 500 deliveries/s.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadtap.bootstrap import build_app  # noqa: E402
from leadtap.core.logs import configure_logging  # noqa: E402
from leadtap.core.store.engine import Database, upgrade_schema  # noqa: E402
from leadtap.dovecot import free_port  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"leadtap-bench-webhook-secret-32!").decode()
RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the answer in one segment, as a production server sends it
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
CONFIG = """
[database]
url = "sqlite:///{db}"

[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[webhooks]]
name = "crm"
url = "http://127.0.0.1:{port}/hooks"
events = ["lead.created"]
secret_env = "BENCH_WEBHOOK_SECRET"
"""


def fill(db_file: Path, events: int) -> None:
    connection = sqlite3.connect(db_file)
    at = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    payload = '{"type":"lead.created","timestamp":"2026-12-06T10:00:00+00:00","version":1,' \
              '"data":{"lead":{"id":%d,"name":"Lead %d","status":"New"},"change":{"by":"mail"}}}'
    connection.executemany(
        "insert into leads (id, name, source, status, status_changed_at, mailbox, received_at, created_at, fields)"
        " values (?, ?, 'Email', 'New', ?, 'sales', ?, ?, '{}')",
        [(i, f"Lead {i}", at, at, at) for i in range(1, events + 1)])
    connection.executemany(
        "insert into webhook_deliveries (endpoint, event, lead_id, webhook_id, payload, state, attempts,"
        " next_attempt_at, created_at) values ('crm', 'lead.created', ?, ?, ?, 'pending', 0, ?, ?)",
        [(i, f"msg_{i:08d}", payload % (i, i), at, at) for i in range(1, events + 1)])
    connection.commit()
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    configure_logging("info", stream=open(os.devnull, "w"))
    os.environ["BENCH_WEBHOOK_SECRET"] = SECRET
    work = Path(tempfile.mkdtemp(prefix="leadtap-bench-"))
    port = free_port()
    config = work / "leadtap.toml"
    config.write_text(CONFIG.format(db=work / "bench.db", port=port))
    db = Database(f"sqlite:///{work / 'bench.db'}")
    upgrade_schema(db.engine)
    db.dispose()
    fill(work / "bench.db", args.events)
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    app = build_app(str(config), os.environ)
    try:
        sender = app.webhook_sender()
        started, sent = time.perf_counter(), 0
        while True:
            report = sender.run()
            if not report.sent:
                break
            sent += report.sent
            print(f"\rdelivered: {sent}", end="", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - started
    finally:
        receiver.terminate()
        receiver.wait()
        app.close()
    assert sent == args.events, sent
    print(f"\revents:                {args.events}, one endpoint, each a different lead's")
    print(f"delivering:            {seconds:.1f} s, {sent / seconds:.0f} deliveries/s (target >= 500/s)")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
