"""The demo: a local Dovecot with a few sample enquiries, one ingest pass into
SQLite, and the leads it created. ``leadtap demo`` (``scripts/demo.sh``);
with ``--keep`` the Dovecot stays up until Ctrl-C, to go on with."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from imapclient import IMAPClient

from leadtap import DEMO_MAIL
from leadtap.dovecot import Dovecot

CONFIG = """\
# Written by the leadtap demo: a local Dovecot mailbox and a SQLite file.
[database]
url = "sqlite:///{db}"

[leads]
statuses = ["New", "Attempting", "Contacted", "Offer submitted", "Qualified", "Disqualified"]
closed_statuses = ["Qualified", "Disqualified"]
default_status = "New"
sources = ["Email", "Website", "Partner"]
default_source = "Email"

[assignment]
enabled = true
role = "sales"

[opportunities]
auto_create = true
stages = ["Discovery", "Proposal", "Negotiation", "Won", "Lost"]

[[owners]]
email = "ana@example.com"
name = "Ana"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
name = "Ben"
roles = ["sales"]

[[mailboxes]]
name = "sales"
host = "127.0.0.1"
port = {port}
security = "plain"
username = "sales@example.com"
password_file = "{password_file}"
source = "Website"
templates = ["contact-form"]

[[extraction_templates]]
name = "contact-form"
from = "*@forms.example.com"
body = \"\"\"
Name: {{{{ name }}}}
Email: {{{{ email }}}}
Phone: {{{{ phone | optional }}}}
Company: {{{{ company | optional }}}}
Message: {{{{ message | multiline }}}}
\"\"\"
"""


def run(workdir: Path, keep: bool = False, main=None) -> int:
    """``main``: the command line's entry point, handed in by ``leadtap demo``.
    The config names its files by absolute path: a relative path in it would
    resolve against the config's own directory, not where the demo ran."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("leadtap.db*"):
        stale.unlink()
    with Dovecot(tls=False) as server:
        password_file = workdir / "mailbox-password"
        password_file.write_text(server.password)
        config = workdir / "leadtap.toml"
        config.write_text(CONFIG.format(db=workdir / "leadtap.db", port=server.port, password_file=password_file))
        with IMAPClient(server.host, port=server.port, ssl=False) as client:
            client.login("sales@example.com", server.password)
            for eml in sorted(DEMO_MAIL.glob("*.eml")):
                client.append("INBOX", eml.read_bytes())
        print(f"demo: a local Dovecot on 127.0.0.1:{server.port} holds {len(list(DEMO_MAIL.glob('*.eml')))} messages")
        for args in (["db", "upgrade"], ["poll"]):
            print(f"$ leadtap {' '.join(args)}")
            if main(["--config", str(config), "--log-level", "warning", *args]) != 0:
                return 1
        print("$ leadtap leads list")
        code = main(["--config", str(config), "--log-level", "warning", "leads", "list"])
        print(f"\nThe config and the SQLite file are in {workdir}/; try:\n"
              f"  leadtap --config {config} leads list --format json")
        if keep:
            hold(server, config, password_file)
    return code


def hold(server: Dovecot, config: Path, password_file: Path) -> None:
    """Keep the Dovecot up until Ctrl-C (or SIGTERM), saying how to use it."""
    print(f"\nThe demo mailbox stays up: IMAP on {server.host}:{server.port}, no TLS, user sales@example.com,\n"
          f"password in {password_file}. Send it mail (any IMAP client can APPEND), then:\n"
          f"  leadtap --config {config} poll\n"
          f"Your own config can point a [[mailboxes]] table at it the same way (security = \"plain\").\n"
          f"Ctrl-C stops it.", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    print("demo: Dovecot stopped.")
