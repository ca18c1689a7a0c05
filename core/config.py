"""The configuration: one TOML file, loaded once into frozen, typed objects.

Nothing here reads the environment by itself: ``load_config`` is handed the
environment mapping, so tests and the composition root decide what it sees.
Every mistake becomes one ``ConfigError`` naming the file, the key and what is
expected.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from string import Template
from typing import Mapping

from core.config_pipeline import parse_pipeline
from core.config_reminders import (  # noqa: F401  (re-exported: the reminder config's home)
    BusinessHours,
    NotificationsConfig,
    ReminderRule,
    RemindersConfig,
    parse_business_hours,
    parse_notifications,
    parse_reminders,
)
from core.config_values import Section, check_unique, list_of_str, parse_seconds, parse_size
from core.errors import ConfigError
from core.lifecycle import Pipeline

DEFAULT_STATUSES = ("New", "Attempting", "Contacted", "Offer submitted", "Qualified", "Disqualified")
DEFAULT_CLOSED = ("Qualified", "Disqualified")
DEFAULT_SOURCES = ("Email", "Website", "Partner")
DEFAULT_STAGES = ("Discovery", "Proposal", "Negotiation", "Won", "Lost")
SECURITY_MODES = ("tls", "starttls", "plain")
MAILBOX_KINDS = ("inbox", "sent")
LEAD_FIELDS = ("name", "email", "phone", "company", "message")


class Secret:
    """A password that never shows itself in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///leadtap.db"


@dataclass(frozen=True)
class LeadsConfig:
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    closed_statuses: tuple[str, ...] = DEFAULT_CLOSED
    default_status: str = "New"
    sources: tuple[str, ...] = DEFAULT_SOURCES
    default_source: str = "Email"


@dataclass(frozen=True)
class AssignmentConfig:
    enabled: bool = True
    role: str = "sales"


@dataclass(frozen=True)
class OpportunitiesConfig:
    auto_create: bool = True
    stages: tuple[str, ...] = DEFAULT_STAGES


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 100
    max_message_size: int = 25 * 1024 * 1024
    max_attempts: int = 3
    timeout: float = 30.0
    parallel_parsing: bool = True
    message_timeout: float = 10.0  # seconds one message may take to read; past it, it fails alone


@dataclass(frozen=True)
class OwnerConfig:
    email: str
    name: str
    roles: tuple[str, ...] = ()
    active: bool = True


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

    @property
    def is_sent(self) -> bool:
        return self.kind == "sent"


@dataclass(frozen=True)
class TemplateConfig:
    name: str
    body: str
    from_glob: str | None = None
    subject_glob: str | None = None

    def accepts(self, sender: str, subject: str) -> bool:
        """True when the optional sender and subject globs both pass."""
        if self.from_glob and not fnmatch.fnmatchcase(sender.lower(), self.from_glob.lower()):
            return False
        if self.subject_glob and not fnmatch.fnmatchcase(subject.lower(), self.subject_glob.lower()):
            return False
        return True


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


@dataclass(frozen=True)
class Config:
    path: Path
    database: DatabaseConfig = DatabaseConfig()
    leads: LeadsConfig = LeadsConfig()
    assignment: AssignmentConfig = AssignmentConfig()
    opportunities: OpportunitiesConfig = OpportunitiesConfig()
    ingest: IngestConfig = IngestConfig()
    owners: tuple[OwnerConfig, ...] = ()
    mailboxes: tuple[MailboxConfig, ...] = ()
    templates: tuple[TemplateConfig, ...] = ()
    smtp: SmtpConfig | None = None
    reminders: RemindersConfig = RemindersConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    pipeline: Pipeline = Pipeline(DEFAULT_STATUSES, DEFAULT_CLOSED, "New")
    warnings: tuple[str, ...] = ()

    def mailbox(self, name: str) -> MailboxConfig:
        for box in self.mailboxes:
            if box.name == name:
                return box
        raise KeyError(name)

    def template(self, name: str) -> TemplateConfig:
        for tpl in self.templates:
            if tpl.name == name:
                return tpl
        raise KeyError(name)

    def is_open(self, status: str) -> bool:
        return status not in self.leads.closed_statuses


def load_config(path: str | Path, environ: Mapping[str, str]) -> Config:
    """Read and validate the TOML file at ``path``; raise ``ConfigError``."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found (pass --config PATH or set LEADTAP_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read the file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    return parse_config(raw, path, environ)


def parse_config(raw: dict, path: Path, environ: Mapping[str, str]) -> Config:
    root = Section(raw, path, "")
    warnings: list[str] = []
    database = DatabaseConfig(**root.table("database").take({"url": str}))
    leads = parse_leads(root.table("leads"))
    assignment = AssignmentConfig(**root.table("assignment").take({"enabled": bool, "role": str}))
    opportunities = parse_opportunities(root.table("opportunities"))
    ingest = parse_ingest(root.table("ingest"))
    owners = tuple(parse_owner(s) for s in root.array("owners"))
    templates = tuple(parse_template(s) for s in root.array("extraction_templates"))
    template_names = [t.name for t in templates]
    mailboxes = tuple(
        parse_mailbox(s, environ, leads, template_names, warnings) for s in root.array("mailboxes")
    )
    smtp = parse_smtp(root.table("smtp"), environ, warnings) if "smtp" in root.data else None
    reminders = parse_reminders(root.table("reminders"), leads, owners)
    pipeline = parse_pipeline(root.table("pipeline"), root.array("statuses"), leads.statuses, leads.closed_statuses,
                              leads.default_status, {o.email.lower() for o in owners})
    notifications = parse_notifications(root.table("notifications"))
    if reminders.rules and smtp is None:
        raise ConfigError(path, "smtp", "reminder rules are configured, so an [smtp] table is required")
    if notifications.enabled and smtp is None:
        raise ConfigError(path, "smtp", "[notifications] new_lead is set, so an [smtp] table is required")
    root.finish()
    check_unique(path, "owners", "email", [o.email.lower() for o in owners])
    check_unique(path, "mailboxes", "name", [m.name for m in mailboxes])
    check_unique(path, "extraction_templates", "name", template_names)
    return Config(
        path=path,
        database=database,
        leads=leads,
        assignment=assignment,
        opportunities=opportunities,
        ingest=ingest,
        owners=owners,
        mailboxes=mailboxes,
        templates=templates,
        smtp=smtp,
        reminders=reminders,
        notifications=notifications,
        pipeline=pipeline,
        warnings=tuple(warnings),
    )


def parse_leads(s: "Section") -> LeadsConfig:
    values = s.take(
        {
            "statuses": list_of_str,
            "closed_statuses": list_of_str,
            "default_status": str,
            "sources": list_of_str,
            "default_source": str,
        }
    )
    leads = LeadsConfig(**values)
    if not leads.statuses:
        s.fail("statuses", "at least one status is expected")
    for status in leads.closed_statuses:
        if status not in leads.statuses:
            s.fail("closed_statuses", f"unknown status {status!r}; expected one of {list(leads.statuses)}")
    if leads.default_status not in leads.statuses:
        s.fail("default_status", f"unknown status {leads.default_status!r}; expected one of {list(leads.statuses)}")
    if leads.default_status in leads.closed_statuses:
        s.fail("default_status", "a new lead must start in an open status, not a closed one")
    if leads.default_source not in leads.sources:
        s.fail("default_source", f"unknown source {leads.default_source!r}; expected one of {list(leads.sources)}")
    return leads


def parse_opportunities(s: "Section") -> OpportunitiesConfig:
    opportunities = OpportunitiesConfig(**s.take({"auto_create": bool, "stages": list_of_str}))
    if not opportunities.stages:
        s.fail("stages", "at least one stage is expected")
    return opportunities


def parse_ingest(s: "Section") -> IngestConfig:
    values = s.take(
        {
            "batch_size": int,
            "max_message_size": parse_size,
            "max_attempts": int,
            "timeout": parse_seconds,
            "parallel_parsing": bool,
            "message_timeout": parse_seconds,
        }
    )
    ingest = IngestConfig(**values)
    if ingest.message_timeout <= 0:
        s.fail("message_timeout", "a time above zero is expected, e.g. \"10s\"")
    if ingest.batch_size < 1:
        s.fail("batch_size", "a whole number of at least 1 is expected")
    if ingest.max_attempts < 1:
        s.fail("max_attempts", "a whole number of at least 1 is expected")
    return ingest


def parse_owner(s: "Section") -> OwnerConfig:
    values = s.take({"email": str, "name": str, "roles": list_of_str, "active": bool}, required=("email",))
    if not EMAIL_RE.fullmatch(values["email"]):
        s.fail("email", f"{values['email']!r} is not an email address")
    values.setdefault("name", values["email"])
    return OwnerConfig(**values)


def parse_template(s: "Section") -> TemplateConfig:
    values = s.take({"name": str, "from": str, "subject": str, "body": str}, required=("name", "body"))
    if not values["body"].strip():
        s.fail("body", "the template body is empty")
    return TemplateConfig(
        name=values["name"],
        body=values["body"],
        from_glob=values.get("from"),
        subject_glob=values.get("subject"),
    )


def parse_mailbox(
    s: "Section",
    environ: Mapping[str, str],
    leads: LeadsConfig,
    template_names: list[str],
    warnings: list[str],
) -> MailboxConfig:
    values = s.take(
        {
            "name": str,
            "host": str,
            "port": int,
            "security": str,
            "username": str,
            "password": str,
            "password_env": str,
            "password_file": str,
            "folder": str,
            "active": bool,
            "unread_only": bool,
            "source": str,
            "templates": list_of_str,
            "poll_interval": parse_seconds,
            "ca_file": str,
            "kind": str,
        },
        required=("name", "host", "username"),
    )
    check_kind(s, values)
    values["password"] = resolve_password(s, values, environ, warnings)
    check_connection(s, values, "IMAP", default_security="tls", ports={"tls": 993, "starttls": 143, "plain": 143})
    source = values.setdefault("source", leads.default_source)
    if source not in leads.sources:
        s.fail("source", f"unknown source {source!r}; expected one of {list(leads.sources)}")
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


def parse_smtp(s: "Section", environ: Mapping[str, str], warnings: list[str]) -> SmtpConfig:
    values = s.take(
        {
            "host": str,
            "port": int,
            "security": str,
            "username": str,
            "password": str,
            "password_env": str,
            "password_file": str,
            "from": str,
            "timeout": parse_seconds,
            "ca_file": str,
        },
        required=("host", "from"),
    )
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
    """security and port of a server connection; the password keys are dropped
    (``resolve_password`` has read them)."""
    for key in ("password_env", "password_file"):
        values.pop(key, None)
    security = values.setdefault("security", default_security)
    if security not in SECURITY_MODES:
        s.fail("security", f"{security!r} is not one of {list(SECURITY_MODES)}")
    if security == "plain" and not is_loopback(values["host"]):
        s.fail("security", f"plain (unencrypted) {protocol} is only allowed to a loopback host, not {values['host']!r}")
    values.setdefault("port", ports[security])
    if not 0 < values["port"] < 65536:
        s.fail("port", "a TCP port between 1 and 65535 is expected")


def resolve_password(s: "Section", values: dict, environ: Mapping[str, str], warnings: list[str]) -> Secret:
    given = [k for k in ("password", "password_env", "password_file") if k in values]
    if len(given) != 1:
        s.fail("password_env", "exactly one of password_env, password_file or password is expected")
    key = given[0]
    if key == "password_env":
        name = values[key]
        if name not in environ:
            s.fail(key, f"environment variable {name} is not set")
        return Secret(environ[name])
    if key == "password_file":
        try:
            file = Template(values[key]).substitute(environ)
        except (KeyError, ValueError) as exc:
            s.fail(key, f"cannot expand {values[key]!r}: variable {exc} is not set")
        try:
            return Secret(Path(file).read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            s.fail(key, f"cannot read the password file {file!r}: {exc.strerror}")
        except UnicodeDecodeError:
            s.fail(key, f"the password file {file!r} is not UTF-8 text")
    warnings.append(
        f"{s.path}: {s.where('password')}: a literal password in the config file; "
        "prefer password_env or password_file"
    )
    return Secret(values["password"])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- value parsers -----------------------------------------------------------

EMAIL_RE = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
