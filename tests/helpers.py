"""Helpers for the tests: an IMAP user of the test Dovecot, configs, messages."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path

from imapclient import IMAPClient

from leadtap.dovecot import Dovecot

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

CONTACT_FORM = '''
Name: {{ name }}
Email: {{ email }}
Phone: {{ phone | optional }}
Company: {{ company | optional }}
Message: {{ message | multiline }}
'''


@dataclass
class Mailbox:
    """One IMAP user of the test Dovecot, with a direct client to put mail in and read flags."""

    server: Dovecot
    user: str
    password: str

    def client(self) -> IMAPClient:
        client = IMAPClient(self.server.host, port=self.server.port, ssl=False, timeout=10)
        if not self.server.cleartext_login:  # LOGINDISABLED until STARTTLS
            client.starttls(ssl.create_default_context(cafile=str(self.server.ca_pem)))
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes | str, flags: tuple = (), folder: str = "INBOX") -> None:
        if isinstance(raw, str):
            raw = raw.encode()
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, raw, flags=flags)

    def flags(self, folder: str = "INBOX") -> dict[int, set[bytes]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            return {uid: set(item[b"FLAGS"]) for uid, item in client.fetch(uids, ["FLAGS"]).items()} if uids else {}

    def unseen(self) -> list[int]:
        return sorted(uid for uid, flags in self.flags().items() if b"\\Seen" not in flags)

    def section(self, name: str | None = None, **overrides) -> str:
        """A [[mailboxes]] table for this user (plain IMAP on loopback)."""
        values = {
            "name": name or "sales",
            "host": self.server.host,
            "port": self.server.port,
            "security": "plain",
            "username": self.user,
            "password": self.password,
            "templates": ["contact-form"],
        }
        values.update(overrides)
        return "[[mailboxes]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items() if v is not None)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


OWNERS = """
[[owners]]
email = "ana@example.com"
name = "Ana"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
name = "Ben"
roles = ["sales"]

[[owners]]
email = "cy@example.com"
name = "Cy"
roles = ["sales"]
"""


def write_config(
    path: Path,
    database_url: str,
    mailboxes: str = "",
    owners: str = OWNERS,
    extra: str = "",
    templates: str | None = None,
) -> Path:
    if templates is None:
        templates = f'[[extraction_templates]]\nname = "contact-form"\nbody = """{CONTACT_FORM}"""\n'
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        '[leads]\nstatuses = ["New", "Attempting", "Contacted", "Offer submitted", "Qualified", "Disqualified"]\n'
        'closed_statuses = ["Qualified", "Disqualified"]\n\n'
        f"{extra}\n{owners}\n{mailboxes}\n{templates}"
    )
    return path


def enquiry(
    name: str = "Jo Smith",
    email: str = "jo@acme.test",
    phone: str = "+370 600 00000",
    company: str = "ACME",
    message: str = "Please send a quote.",
    sender: str = "Website <noreply@forms.example.com>",
    subject: str = "New enquiry",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A web-form notification in the contact-form layout."""
    body = f"Name: {name}\nEmail: {email}\nPhone: {phone}\nCompany: {company}\nMessage: {message}\n"
    return plain_message(body, sender=sender, subject=subject, message_id=message_id, headers=headers)


def plain_message(
    body: str,
    sender: str = "Jo Smith <jo@acme.test>",
    subject: str = "Hello",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    to: str = "sales@example.com",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc))
    msg["Message-ID"] = message_id or make_msgid(idstring=uuid.uuid4().hex[:8], domain="test.example")
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return bytes(msg)


def run_leadtap(*args: str, config: Path | None = None, env: dict | None = None, timeout: float = 120):
    """Run the real ``leadtap`` command in a child process."""
    command = [sys.executable, "-m", "leadtap"]
    if config is not None:
        command += ["--config", str(config)]
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(command + list(args), capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=ROOT)


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")
