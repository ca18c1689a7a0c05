"""The server tables of the configuration: ``[[mailboxes]]`` (IMAP) and
``[smtp]`` — where to connect, how securely, and the password, read from the
environment, a file or (with a warning) the config itself."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from string import Template
from typing import Callable, Mapping

from leadtap.core.config.values import Section, list_of_str, parse_seconds
from leadtap.core.rules.model import EMAIL_RE


SECURITY_MODES = ("tls", "starttls", "plain")
MAILBOX_KINDS = ("inbox", "sent")


class Secret:
    """A password that never shows itself in a repr, a log line or an error.

    Read when a command first needs it (``load``), not when the config is
    loaded: listing leads needs no IMAP password. A secret that cannot be read
    raises ``ConfigError`` naming the file and the key, then."""

    __slots__ = ("_value", "_load")

    def __init__(self, value: str | None = None, load: Callable[[], str] | None = None):
        self._value, self._load = value, load

    def reveal(self) -> str:
        if self._value is None:
            self._value = self._load()
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Equal values, or the same source — never read for a comparison."""
        if not isinstance(other, Secret):
            return False
        if self._value is not None and other._value is not None:
            return self._value == other._value
        return self._load is other._load and self._load is not None

    def __hash__(self) -> int:
        return id(self._load) if self._load is not None else hash(self._value)


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    host: str
    username: str
    password: Secret = field(repr=False)
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


# The keys of a server connection, IMAP or SMTP (``check_connection``, ``resolve_password``).
CONNECTION_KEYS = {"host": str, "port": int, "security": str, "username": str, "password": str,
                   "password_env": str, "password_file": str, "ca_file": str}


def parse_mailbox(
    s: "Section",
    environ: Mapping[str, str],
    sources: tuple[str, ...],
    default_source: str,
    template_names: list[str],
    warnings: list[str],
) -> MailboxConfig:
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
        },
        required=("name", "host", "username"),
    )
    check_kind(s, values)
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
    values = s.take({**CONNECTION_KEYS, "from": str, "timeout": parse_seconds}, required=("host", "from"))
    if any(k in values for k in ("password", "password_env", "password_file")) or "username" in values:
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
    given = [k for k in ("password", "password_env", "password_file") if k in values]
    if len(given) != 1:
        s.fail("password_env", "exactly one of password_env, password_file or password is expected")
    key = given[0]
    if key != "password":
        return Secret(load=secret_reader(s, key, values[key], environ))
    warnings.append(
        f"{s.path}: {s.where('password')}: a literal password in the config file; "
        "prefer password_env or password_file"
    )
    return Secret(values["password"])


def secret_reader(s: "Section", key: str, written: str, environ: Mapping[str, str]) -> Callable[[], str]:
    """What reads a secret when first needed: ``*_env`` names a variable, ``*_file`` a file."""
    if key.endswith("_env"):
        return lambda: read_env_secret(s, key, written, environ)
    base = s.path.resolve().parent  # now: the working directory may change before the secret is read
    return lambda: read_file_secret(s, key, written, environ, base)


def read_env_secret(s: "Section", key: str, name: str, environ: Mapping[str, str]) -> str:
    if name not in environ:
        s.fail(key, f"environment variable {name} is not set")
    return environ[name]


def read_file_secret(s: "Section", key: str, written: str, environ: Mapping[str, str], base: Path) -> str:
    """``${CREDENTIALS_DIRECTORY}/imap`` and the like; a relative path is the config file's directory's."""
    try:
        file = str(base / Template(written).substitute(environ))
    except (KeyError, ValueError) as exc:
        s.fail(key, f"cannot expand {written!r}: variable {exc} is not set")
    try:
        return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        s.fail(key, f"cannot read the password file {file!r}: {exc.strerror}")
    except UnicodeDecodeError:
        s.fail(key, f"the password file {file!r} is not UTF-8 text")


def relative_to_config(s: "Section", path: str) -> str:
    """A relative path in the config is relative to the config file, not to the working directory."""
    return str(s.path.resolve().parent / path)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
