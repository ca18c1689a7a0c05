"""The configuration: one TOML file, loaded once into frozen, typed objects.

Nothing here reads the environment by itself: ``load_config`` is handed the
environment mapping, so tests and the composition root decide what it sees.
Every mistake becomes one ``ConfigError`` naming the file, the key and what is
expected.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from leadtap.core.config.webhooks import WebhookConfig, parse_webhook
from leadtap.core.config.pipeline import default_name, parse_pipeline, parse_pipelines, statuses_by_pipeline
from leadtap.core.config.reminders import (  # noqa: F401  (re-exported: the reminder config's home)
    BusinessHours,
    NotificationsConfig,
    ReminderRule,
    RemindersConfig,
    parse_business_hours,
    parse_notifications,
    parse_reminders,
)
from leadtap.core.rules.model import EMAIL_RE
from leadtap.core.config.servers import (  # noqa: F401  (re-exported: the server tables' home)
    MAILBOX_KINDS,
    SECURITY_MODES,
    MailboxConfig,
    MetricsConfig,
    Secret,
    SmtpConfig,
    parse_mailbox,
    parse_metrics,
    parse_smtp,
)
from leadtap.core.config.commands import CommandsConfig, parse_commands
from leadtap.core.config.oauth2 import TokenKeyConfig, parse_token_key
from leadtap.core.config.deals import OpportunitiesConfig, parse_opportunities
from leadtap.core.config.values import Section, check_unique, list_of_str, parse_seconds, parse_size
from leadtap.core.errors import ConfigError
from leadtap.core.rules.lifecycle import CONTACT_FIELDS, FIELD_TYPES, RESERVED, FieldSpec, Pipeline, won_deals_qualify

DEFAULT_STATUSES = ("New", "Attempting", "Contacted", "Offer submitted", "Qualified", "Disqualified")
DEFAULT_CLOSED = ("Qualified", "Disqualified")
DEFAULT_SOURCES = ("Email", "Website", "Partner")
LEAD_FIELDS = ("name", "email", "phone", "company", "message")


DEFAULT_DATABASE = "sqlite:///leadtap.db"


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = DEFAULT_DATABASE


SQLITE_URL_RE = re.compile(r"(sqlite(?:\+\w+)?:///)(.+)")


def sqlite_beside(url: str, config_file: Path) -> str:
    """``sqlite:///leadtap.db`` (three slashes: a relative path; any driver,
    ``sqlite+pysqlite:///``) is the config file's directory's, not the working
    directory's; ``sqlite:////abs`` stays."""
    match = SQLITE_URL_RE.fullmatch(url)
    if match is None or match.group(2).startswith(("/", ":memory:")):
        return url
    return match.group(1) + str(config_file.resolve().parent / match.group(2))


@dataclass(frozen=True)
class LeadsConfig:
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    closed_statuses: tuple[str, ...] = DEFAULT_CLOSED
    default_status: str = "New"
    sources: tuple[str, ...] = DEFAULT_SOURCES
    default_source: str = "Email"
    required: tuple[str, ...] = ()  # fields a lead entered or edited by hand must have
    types: tuple[str, ...] = ()  # HubSpot's lead types, e.g. New business, Upsell, Re-attempting (none: untyped)
    default_type: str | None = None  # a new lead's (default: the first type)
    fields: tuple[FieldSpec, ...] = ()  # declared custom fields ([[leads.fields]])


@dataclass(frozen=True)
class AssignmentConfig:
    enabled: bool = True
    role: str = "sales"
    company_owner: bool = False  # a new contact at a company with an open lead goes to that lead's owner
    free_mail: tuple[str, ...] = ()  # domains added to the shipped free-mail list


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
class TemplateConfig:
    name: str
    body: str
    from_glob: str | None = None
    subject_glob: str | None = None

    def accepts(self, sender: str, subject: str) -> bool:
        """True when the optional sender and subject globs both pass."""
        return self.refusal(sender, subject) is None

    def refusal(self, sender: str, subject: str) -> str | None:
        """Which filter refuses the message, in words; None when both pass."""
        if self.from_glob and not fnmatch.fnmatchcase(sender.lower(), self.from_glob.lower()):
            return f"from = {self.from_glob!r} does not match the sender {sender!r}"
        if self.subject_glob and not fnmatch.fnmatchcase(subject.lower(), self.subject_glob.lower()):
            return f"subject = {self.subject_glob!r} does not match the subject {subject!r}"
        return None


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
    commands: CommandsConfig = CommandsConfig()
    metrics: MetricsConfig = MetricsConfig()
    oauth2: TokenKeyConfig = TokenKeyConfig()
    pipeline: Pipeline = Pipeline(DEFAULT_STATUSES, DEFAULT_CLOSED, "New")  # the default one
    pipelines: Mapping[str, Pipeline] = field(default_factory=dict)  # every one by name, the default first
    webhooks: tuple[WebhookConfig, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def every_pipeline(self) -> tuple[Pipeline, ...]:
        return tuple(self.pipelines.values()) or (self.pipeline,)

    def pipeline_called(self, name: str) -> Pipeline | None:
        """The pipeline named so, in any case; None when there is none."""
        return next((p for p in self.every_pipeline if p.name.lower() == name.strip().lower()), None)

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every pipeline's statuses, the default one's first."""
        return tuple(dict.fromkeys(s for p in self.every_pipeline for s in p.statuses))

    @property
    def closed(self) -> tuple[str, ...]:
        """Every pipeline's closed statuses (a status is closed in all of them or in none)."""
        return tuple(dict.fromkeys(s for p in self.every_pipeline for s in p.closed))

    def pipeline_of(self, key: str | None) -> Pipeline:
        """A lead's pipeline by its ``pipeline`` column (None: the default one)."""
        return self.pipelines.get(key, self.pipeline) if key is not None else self.pipeline

    @property
    def sweeps(self) -> bool:
        """A reminder sweep has work: reminder rules, or a deal staleness policy."""
        return bool(self.reminders.rules) or self.opportunities.deals.staleness.enabled

    @property
    def workflows(self) -> bool:
        """A status (or a deal stage) has a workflow: its steps are run from the outbox."""
        return (any(option.steps for each in self.every_pipeline for option in each.options.values())
                or any(self.opportunities.deals.steps.values()))

    @property
    def owes_mail(self) -> bool:
        """Owners may be owed emails, or workflows' steps (the outbox is run on a schedule)."""
        deals = self.opportunities.deals
        return (self.notifications.enabled or self.commands.enabled or self.workflows or bool(self.webhooks)
                or any(r.reassign_after for r in self.reminders.rules)
                or (self.smtp is not None and (deals.staleness.enabled or deals.onboarding is not None)))

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

    def read_secrets(self) -> None:
        """Read every password now (``run`` starts only with all of them): a ConfigError names the one that fails."""
        servers = [box for box in self.mailboxes if box.active] + ([self.smtp] if self.smtp else [])
        for server in servers:
            oauth2 = server.oauth2
            for secret in (server.password, oauth2 and oauth2.client_secret, oauth2 and oauth2.key):
                if secret is not None:
                    secret.reveal()
        if self.oauth2.key is not None:
            self.oauth2.key.reveal()
        if self.commands.enabled:
            self.commands.secret.reveal()
        for hook in self.webhooks:
            hook.secret.reveal()


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
    database = DatabaseConfig(sqlite_beside(root.table("database").take({"url": str}).get("url", DEFAULT_DATABASE),
                                            path))
    leads = parse_leads(root.table("leads"))
    assignment = AssignmentConfig(**root.table("assignment").take({"enabled": bool, "role": str,
                                                                   "company_owner": bool, "free_mail": list_of_str}))
    assignment = replace(assignment, free_mail=tuple(domain.strip().lower() for domain in assignment.free_mail))
    ingest = parse_ingest(root.table("ingest"))
    owners = tuple(parse_owner(s) for s in root.array("owners"))
    opportunities = parse_opportunities(root.table("opportunities"), root.table("onboarding"),
                                        {role for owner in owners for role in owner.roles}, assignment.role)
    templates = tuple(parse_template(s) for s in root.array("extraction_templates"))
    template_names = [t.name for t in templates]
    mailboxes = tuple(
        parse_mailbox(s, environ, leads.sources, leads.default_source, template_names, warnings)
        for s in root.array("mailboxes")
    )
    smtp = parse_smtp(root.table("smtp"), environ, warnings) if "smtp" in root.data else None
    pipeline_table = root.table("pipeline")
    options = statuses_by_pipeline(root.array("statuses"), default_name(pipeline_table))
    owner_emails, roles = {o.email.lower() for o in owners}, frozenset(role for owner in owners for role in owner.roles)
    fields = {spec.name: spec for spec in leads.fields}
    pipeline = parse_pipeline(pipeline_table, options.pop(None, []), leads.statuses, leads.closed_statuses,
                              leads.default_status, owner_emails, opportunities.stages, leads.types, roles, fields)
    pipelines = parse_pipelines(root.array("pipelines"), options, pipeline, owner_emails, opportunities.stages,
                                leads.types, roles, fields)
    pipelines = {name: replace(won_deals_qualify(each, opportunities.deals.won), required=leads.required,
                               fields=fields) for name, each in pipelines.items()}
    pipeline = pipelines[pipeline.name]
    every_status = tuple(dict.fromkeys(status for each in pipelines.values() for status in each.statuses))
    every_closed = tuple(dict.fromkeys(status for each in pipelines.values() for status in each.closed))
    reminders = parse_reminders(root.table("reminders"), every_status, every_closed, set(roles), pipelines)
    for index, box in enumerate(mailboxes):
        if box.pipeline is not None and box.pipeline not in pipelines:
            raise ConfigError(path, f"mailboxes[{index}].pipeline",
                              f"unknown pipeline {box.pipeline!r}; expected one of {list(pipelines)}")
    notifications = parse_notifications(root.table("notifications"))
    webhooks = tuple(parse_webhook(section, environ) for section in root.array("webhooks"))
    metrics = parse_metrics(root.table("metrics"))
    token_key = parse_token_key(root.table("oauth2"), environ,
                                needed=any(server.oauth2 for server in (*mailboxes, smtp) if server is not None))
    commands = parse_commands(root.table("commands"), environ)
    if commands.enabled and smtp is None:
        raise ConfigError(path, "smtp", "[commands] answers replies by email, so an [smtp] table is required")
    for index, rule in enumerate(reminders.rules):
        if rule.reassign_after and not assignment.enabled:
            raise ConfigError(path, f"reminders.rules[{index}].reassign_after",
                              "reassignment takes the rotation's next owner, but [assignment] enabled = false")
    if reminders.rules and smtp is None:
        raise ConfigError(path, "smtp", "reminder rules are configured, so an [smtp] table is required")
    if opportunities.deals.staleness.enabled and smtp is None:
        raise ConfigError(path, "smtp", "[opportunities.staleness] warns owners before it closes a deal, "
                                        "so an [smtp] table is required")
    sends = [f"statuses.{o.name}" for each in pipelines.values() for o in each.options.values()
             if any(step.sends for step in o.steps)]
    sends += [f"opportunities.steps.{stage}" for stage, steps in opportunities.deals.steps.items()
              if any(step.sends for step in steps)]
    if sends and smtp is None:
        raise ConfigError(path, "smtp", f"the workflow of {sends[0]} sends email, so an [smtp] table is required")
    if notifications.enabled and smtp is None:
        raise ConfigError(path, "smtp", "[notifications] new_lead is set, so an [smtp] table is required")
    root.finish()
    check_unique(path, "owners", "email", [o.email.lower() for o in owners])
    check_unique(path, "mailboxes", "name", [m.name for m in mailboxes])
    check_unique(path, "extraction_templates", "name", template_names)
    check_unique(path, "webhooks", "name", [hook.name for hook in webhooks])
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
        commands=commands,
        metrics=metrics,
        oauth2=token_key,
        pipeline=pipeline,
        pipelines=pipelines,
        webhooks=webhooks,
        warnings=tuple(warnings),
    )


def parse_leads(s: "Section") -> LeadsConfig:
    fields = tuple(parse_field_spec(section) for section in s.array("fields"))
    check_unique(s.path, s.where("fields"), "name", [spec.name for spec in fields])
    values = s.take(
        {
            "statuses": list_of_str,
            "closed_statuses": list_of_str,
            "default_status": str,
            "sources": list_of_str,
            "default_source": str,
            "required": list_of_str,
            "types": list_of_str,
            "default_type": str,
        }
    )
    leads = LeadsConfig(**values, fields=fields)
    if leads.default_type is not None and leads.default_type not in leads.types:
        s.fail("default_type", f"unknown type {leads.default_type!r}; expected one of {list(leads.types)}")
    if leads.types and leads.default_type is None:
        leads = replace(leads, default_type=leads.types[0])
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


def parse_field_spec(s: "Section") -> FieldSpec:
    """``[[leads.fields]]``: a custom field's name and type (text, number, date, choice with its choices)."""
    values = s.take({"name": str, "type": str, "choices": list_of_str}, required=("name",))
    name, kind = values["name"].strip(), values.get("type", "text")
    if name.casefold() in (*RESERVED, *CONTACT_FIELDS):
        s.fail("name", f"{name!r} is a lead's own field, not a custom one")
    if kind not in FIELD_TYPES:
        s.fail("type", f"{kind!r}: expected one of {list(FIELD_TYPES)}")
    choices = values.get("choices", ())
    if (kind == "choice") != bool(choices):
        s.fail("choices", "a choice field needs its choices" if kind == "choice"
               else f"only a choice field has choices, not a {kind} one")
    return FieldSpec(name, kind, choices)


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


