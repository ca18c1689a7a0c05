"""What signing in with OAuth2 costs a poll, against a password, in one run on
the same messages: two users of one local Dovecot (with its oauth2 passdb,
tokens checked by RFC 7662 introspection at the test authorization server)
hold the same N web-form notifications; one is polled with a password, the
other with a client-credentials token.

    .venv/bin/python bench/oauth2_poll.py [-n 5000] [--empty 50]

Each mailbox is polled by `leadtap poll` in a child process (the token's first
fetch is its own line: it happens once per sign-in, then every worker reuses
the stored token), then `--empty` polls that find nothing: each opens a
connection and signs in, so their time is the sign-in's cost — as `leadtap
poll` processes, and as passes in one process (as `leadtap run` makes them).
Prints wall and CPU seconds and the OAuth2/password ratios.
Target: no more than the password's beyond the first token fetch (ratio ≈ 1).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import TEMPLATE, fill_mailbox  # noqa: E402
from leadtap.bootstrap import build_app  # noqa: E402
from leadtap.dovecot import Dovecot  # noqa: E402
from leadtap.core.logs import configure_logging  # noqa: E402
from tests.oauth_server import AuthorizationServer  # noqa: E402

CONFIG = """
[database]
url = "sqlite:///{db}"

[[owners]]
email = "ana@example.com"
roles = ["sales"]

[oauth2]
token_key_file = "{dir}/token.key"

[[mailboxes]]
name = "password"
host = "127.0.0.1"
port = {port}
security = "plain"
username = "pw@example.com"
password = "{password}"
templates = ["contact-form"]

[[mailboxes]]
name = "oauth2"
host = "127.0.0.1"
port = {port}
security = "plain"
username = "tk@example.com"
templates = ["contact-form"]
auth = "oauth2"
[mailboxes.oauth2]
provider = "generic"
grant = "client_credentials"
token_url = "{token_url}"
scope = "imap"
client_id = "bench"
client_secret_file = "{dir}/client.secret"

{template}"""


def leadtap(config: Path, *args: str) -> tuple[float, float]:
    """(wall, CPU of the child) seconds of one `leadtap` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), *args], capture_output=True,
                          text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"leadtap {' '.join(args)} failed: {done.stdout[-500:]} {done.stderr[-1500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--empty", type=int, default=50)
    args = parser.parse_args()
    configure_logging("warning")  # the in-process passes' one line each would drown the figures
    with AuthorizationServer() as auth, tempfile.TemporaryDirectory() as tmp:
        auth.add_client("bench", "bench-secret", mailboxes={"tk@example.com"})
        with Dovecot(tls=False, oauth2_introspection_url=f"{auth.url}/introspect") as server:
            for user in ("pw@example.com", "tk@example.com"):
                fill_mailbox(server, args.n, user=user)
            directory = Path(tmp)
            (directory / "token.key").write_text("bench-token-key-" * 4)
            (directory / "client.secret").write_text("bench-secret")
            config = directory / "leadtap.toml"
            config.write_text(CONFIG.format(template=TEMPLATE, db=directory / "leadtap.db", dir=directory,
                                            port=server.port, password=server.password, token_url=auth.token_url))
            leadtap(config, "db", "upgrade")
            rows = []
            for name in ("password", "oauth2"):
                rows.append((f"poll of {args.n:,} messages", name, *leadtap(config, "poll", "--mailbox", name)))
            fetches = auth.count("client_credentials")
            for name in ("password", "oauth2"):
                wall = cpu = 0.0
                for _ in range(args.empty):
                    w, c = leadtap(config, "poll", "--mailbox", name)
                    wall, cpu = wall + w, cpu + c
                rows.append((f"empty poll (mean of {args.empty})", name, wall / args.empty, cpu / args.empty))
            app = build_app(str(config))  # as `leadtap run` polls: one process, pass after pass
            for name in ("password", "oauth2"):
                app.ingest_mailbox(name)  # warm: imports, the token read once
                started, cpu_started = time.perf_counter(), time.process_time()
                for _ in range(args.empty):
                    app.ingest_mailbox(name)
                rows.append((f"empty pass in run (mean of {args.empty})", name,
                             (time.perf_counter() - started) / args.empty,
                             (time.process_time() - cpu_started) / args.empty))
            app.close()
            assert auth.count("client_credentials") == fetches, "a poll fetched another token"
    print(f"token fetches: {fetches} (the first poll's), then none: the stored token served {args.empty} polls")
    print(f"{'what':34} {'sign-in':9} {'wall s':>8} {'CPU s':>8} {'OAuth2/password':>16}")
    for index, (what, name, wall, cpu) in enumerate(rows):
        ratio = f"{wall / rows[index - 1][2]:.2f} / {cpu / rows[index - 1][3]:.2f}" if name == "oauth2" else ""
        print(f"{what:34} {name:9} {wall:8.3f} {cpu:8.3f} {ratio:>16}")


if __name__ == "__main__":
    main()
