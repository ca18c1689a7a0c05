"""The server tables of the configuration: ``[[mailboxes]]`` (IMAP) and
``[smtp]`` — where to connect, how securely, and the password, read from the
environment, a file or (with a warning) the config itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Mapping

from leadtap.core.config.oauth2 import OAuth2Config, parse_auth
from leadtap.core.config.secrets import Secret, resolve_secret
from leadtap.core.config.values import Section, is_loopback, list_of_str, parse_seconds
from leadtap.core.rules.model import EMAIL_RE


SECURITY_MODES = ("tls", "starttls", "plain")
MAILBOX_KINDS = ("inbox", "sent")


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    host: str
    username: str
    password: Secret | None = field(default=None, repr=False)  # None: auth = "oauth2"
    port: int = 993
    security: str = "tls"
    folder: str = "INBOX"
    active: bool = True
    unread_only: bool = True
    source: str = "Email"
    templates: tuple[str, ...] = ()
    poll_interval: timedelta = timedelta(seconds=60)
    ca_file: str | None = None
    kind: str = "inbox"  # inbox: mail becomes leads; sent: the team's sent mail, outreach only
    idle: bool | None = None  # push (IMAP IDLE): None uses it when the server announces it
    pipeline: str | None = None  # the [[pipelines]] its new leads go to (None: the default pipeline)
    auth: str = "password"
    oauth2: OAuth2Config | None = None

    @property
    def is_sent(self) -> bool:
        return self.kind == "sent"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    sender: str  # the From header: "leadtap <crm@example.com>"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: str | None = None
    auth: str = "password"
    oauth2: OAuth2Config | None = None


# The keys of a server connection, IMAP or SMTP (``check_connection``, ``resolve_password``).
CONNECTION_KEYS = {"host": str, "port": int, "security": str, "username": str, "password": str,
                   "password_env": str, "password_file": str, "ca_file": str, "auth": str}


def parse_mailbox(
    s: "Section",
    environ: Mapping[str, str],
    sources: tuple[str, ...],
    default_source: str,
    template_names: list[str],
    warnings: list[str],
) -> MailboxConfig:
    oauth2 = s.table("oauth2")
    values = s.take(
        {
            **CONNECTION_KEYS,
            "name": str,
            "folder": str,
            "active": bool,
            "unread_only": bool,
            "source": str,
            "templates": list_of_str,
            "poll_interval": parse_seconds,
            "kind": str,
            "idle": bool,
            "pipeline": str,
        },
        required=("name",),
    )
    check_kind(s, values)
    if values.get("kind") == "sent" and "pipeline" in values:
        s.fail("pipeline", "a sent folder makes no leads: its pipeline is its leads' own")
    values["oauth2"] = parse_auth(s, oauth2, values, "imap", environ, warnings)
    for key in ("host", "username"):
        if key not in values:
            s.fail(key, "this key is required")
    if values["oauth2"] is None:
        values["password"] = resolve_password(s, values, environ, warnings)
    check_connection(s, values, "IMAP", default_security="tls", ports={"tls": 993, "starttls": 143, "plain": 143})
    source = values.setdefault("source", default_source)
    if source not in sources:
        s.fail("source", f"unknown source {source!r}; expected one of {list(sources)}")
    for name in values.get("templates", ()):
        if name not in template_names:
            s.fail("templates", f"unknown extraction template {name!r}; defined: {template_names}")
    if "poll_interval" in values:
        values["poll_interval"] = timedelta(seconds=values["poll_interval"])
    return MailboxConfig(**values)


def check_kind(s: "Section", values: dict) -> None:
    """A sent folder is read by UID with its flags untouched, and makes no leads."""
    kind = values.setdefault("kind", "inbox")
    if kind not in MAILBOX_KINDS:
        s.fail("kind", f"{kind!r} is not one of {list(MAILBOX_KINDS)}")
    if kind != "sent":
        return
    if values.setdefault("unread_only", False):
        s.fail("unread_only", "a sent folder is read by UID, already-read mail included; leave unread_only out")
    if values.get("templates"):
        s.fail("templates", "a sent folder makes no leads, so it takes no extraction templates")


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics] listen = "127.0.0.1:9464"``: Prometheus metrics from ``leadtap run``; off without it."""

    host: str | None = None
    port: int | None = None

    @property
    def enabled(self) -> bool:
        return self.port is not None


def parse_metrics(s: "Section") -> MetricsConfig:
    values = s.take({"listen": str})
    if "listen" not in values:
        return MetricsConfig()
    host, sep, port = values["listen"].rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        s.fail("listen", f"{values['listen']!r} is not HOST:PORT; expected e.g. \"127.0.0.1:9464\"")
    return MetricsConfig(host.strip("[]"), int(port))


def parse_smtp(s: "Section", environ: Mapping[str, str], warnings: list[str]) -> SmtpConfig:
    oauth2 = s.table("oauth2")
    values = s.take({**CONNECTION_KEYS, "from": str, "timeout": parse_seconds}, required=("from",))
    values["oauth2"] = parse_auth(s, oauth2, values, "smtp", environ, warnings)
    if "host" not in values:
        s.fail("host", "this key is required")
    if values["oauth2"] is None and (any(k in values for k in ("password", "password_env", "password_file"))
                                     or "username" in values):
        if "username" not in values:
            s.fail("username", "a password is given, so a username is required")
        values["password"] = resolve_password(s, values, environ, warnings)
    check_connection(s, values, "SMTP", default_security="starttls", ports={"tls": 465, "starttls": 587, "plain": 25})
    sender = values.pop("from")
    if not EMAIL_RE.search(sender):
        s.fail("from", f"{sender!r} has no email address; expected e.g. \"leadtap <crm@example.com>\"")
    return SmtpConfig(sender=sender, **values)


def check_connection(s: "Section", values: dict, protocol: str, default_security: str, ports: dict) -> None:
    """security, port and CA file of a server connection; the password keys are
    dropped (``resolve_password`` has read them)."""
    for key in ("password_env", "password_file"):
        values.pop(key, None)
    if "ca_file" in values:
        values["ca_file"] = relative_to_config(s, values["ca_file"])
    security = values.setdefault("security", default_security)
    if security not in SECURITY_MODES:
        s.fail("security", f"{security!r} is not one of {list(SECURITY_MODES)}")
    if security == "plain" and not is_loopback(values["host"]):
        s.fail("security", f"plain (unencrypted) {protocol} is only allowed to a loopback host, not {values['host']!r}")
    values.setdefault("port", ports[security])
    if not 0 < values["port"] < 65536:
        s.fail("port", "a TCP port between 1 and 65535 is expected")


def resolve_password(s: "Section", values: dict, environ: Mapping[str, str], warnings: list[str]) -> Secret:
    """Which password key is given is checked now; the secret is read when first needed."""
    secret = resolve_secret(s, values, "password", environ, warnings)
    if secret is None:
        s.fail("password_env", "exactly one of password_env, password_file or password is expected")
    return secret


def relative_to_config(s: "Section", path: str) -> str:
    """A relative path in the config is relative to the config file, not to the working directory."""
    return str(s.path.resolve().parent / path)
