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
from datetime import datetime, time, timedelta
from pathlib import Path
from string import Template
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.config_pipeline import parse_pipeline
from core.config_values import Section, list_of_str, parse_seconds, parse_size
from core.errors import ConfigError
from core.lifecycle import Pipeline

DEFAULT_STATUSES = ("New", "Attempting", "Contacted", "Offer submitted", "Qualified", "Disqualified")
DEFAULT_CLOSED = ("Qualified", "Disqualified")
DEFAULT_SOURCES = ("Email", "Website", "Partner")
DEFAULT_STAGES = ("Discovery", "Proposal", "Negotiation", "Won", "Lost")
SECURITY_MODES = ("tls", "starttls", "plain")
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
class BusinessHours:
    """Weekdays (0 = Monday) and a daily window, e.g. "Mon-Fri 08:00-18:00"."""

    spans: tuple[tuple[frozenset[int], time, time], ...]

    def contains(self, moment: datetime) -> bool:
        """``moment`` must already be in the reminders' timezone."""
        return any(
            moment.weekday() in days and start <= moment.time() < end for days, start, end in self.spans
        )


@dataclass(frozen=True)
class ReminderRule:
    name: str
    status: str
    after: timedelta
    template: str = "stale_lead"
    enabled: bool = True
    repeat_every: timedelta | None = None
    escalate_after: int | None = None
    escalate_to_role: str | None = None


@dataclass(frozen=True)
class RemindersConfig:
    sweep_every: timedelta = timedelta(minutes=15)
    timezone: str = "UTC"
    business_hours: BusinessHours | None = None
    digest: bool = False
    templates_dir: str | None = None
    lead_url: str | None = None
    rules: tuple[ReminderRule, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


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
    if reminders.rules and smtp is None:
        raise ConfigError(path, "smtp", "reminder rules are configured, so an [smtp] table is required")
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
        },
        required=("name", "host", "username"),
    )
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


def parse_reminders(s: "Section", leads: LeadsConfig, owners: tuple[OwnerConfig, ...]) -> RemindersConfig:
    rules_sections = s.array("rules")  # taken first: take() refuses keys it does not know
    values = s.take(
        {
            "sweep_every": parse_seconds,
            "timezone": str,
            "business_hours": parse_business_hours,
            "digest": bool,
            "templates_dir": str,
            "lead_url": str,
        }
    )
    if "sweep_every" in values:
        values["sweep_every"] = timedelta(seconds=values["sweep_every"])
    try:
        ZoneInfo(values.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        s.fail("timezone", f"unknown time zone {values['timezone']!r}; expected e.g. \"Europe/Vilnius\"")
    if "lead_url" in values and "{id}" not in values["lead_url"]:
        s.fail("lead_url", "a URL with {id} where the lead's id goes is expected")
    roles = {role for owner in owners for role in owner.roles}
    rules = tuple(parse_rule(r, leads, roles) for r in rules_sections)
    check_unique(s.path, "reminders.rules", "name", [r.name for r in rules])
    return RemindersConfig(rules=rules, **values)


def parse_rule(s: "Section", leads: LeadsConfig, roles: set[str]) -> ReminderRule:
    values = s.take(
        {
            "name": str,
            "status": str,
            "after": parse_seconds,
            "template": str,
            "enabled": bool,
            "repeat_every": parse_seconds,
            "escalate_after": int,
            "escalate_to_role": str,
        },
        required=("name", "status", "after"),
    )
    if values["status"] not in leads.statuses:
        s.fail("status", f"unknown status {values['status']!r}; expected one of {list(leads.statuses)}")
    if values["status"] in leads.closed_statuses:
        s.fail("status", f"{values['status']!r} is a closed status; reminders are for open leads")
    for key in ("after", "repeat_every"):
        if key in values:
            values[key] = timedelta(seconds=values[key])
    if not TEMPLATE_NAME_RE.fullmatch(values.get("template", "stale_lead")):
        s.fail("template", "a template name (letters, digits, _ and -) is expected")
    if ("escalate_after" in values) != ("escalate_to_role" in values):
        s.fail("escalate_to_role", "escalate_after and escalate_to_role go together")
    if values.get("escalate_after", 1) < 1:
        s.fail("escalate_after", "a whole number of at least 1 is expected")
    if "escalate_to_role" in values and values["escalate_to_role"] not in roles:
        s.fail("escalate_to_role", f"no owner holds the role {values['escalate_to_role']!r}")
    return ReminderRule(**values)


def parse_business_hours(value: Any) -> BusinessHours:
    """ "Mon-Fri 08:00-18:00" or several, comma-separated: "Mon-Fri 08:00-18:00, Sat 09:00-12:00". """
    if not isinstance(value, str) or not value.strip():
        raise ValueError('business hours such as "Mon-Fri 08:00-18:00" are expected')
    spans = []
    for part in value.split(","):
        match = HOURS_RE.fullmatch(part.strip())
        if not match:
            raise ValueError(f'{part.strip()!r} is not business hours; expected e.g. "Mon-Fri 08:00-18:00"')
        first, last, start, end = match.groups()
        days = weekday_range(first, last or first)
        start_time, end_time = clock_time(start), clock_time(end)
        if end_time <= start_time:
            raise ValueError(f"{part.strip()!r}: the end must come after the start")
        spans.append((days, start_time, end_time))
    return BusinessHours(tuple(spans))


def weekday_range(first: str, last: str) -> frozenset[int]:
    a, b = WEEKDAYS.index(first.lower()[:3]), WEEKDAYS.index(last.lower()[:3])
    return frozenset(range(a, b + 1)) if a <= b else frozenset(list(range(a, 7)) + list(range(0, b + 1)))


def clock_time(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)


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


def check_unique(path: Path, array: str, key: str, values: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(path, f"{array}[{i}].{key}", f"duplicate {key} {value!r}; each must be unique")
        seen.add(value)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- value parsers -----------------------------------------------------------

EMAIL_RE = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
TEMPLATE_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_RE = re.compile(
    r"(?i)(mon|tue|wed|thu|fri|sat|sun)[a-z]*(?:\s*-\s*(mon|tue|wed|thu|fri|sat|sun)[a-z]*)?"
    r"\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})"
)
