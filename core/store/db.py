"""Persistence: the SQLAlchemy 2.x tables (``core.store.engine`` opens them).

The same models run on SQLite (the default, one file) and PostgreSQL (several
workers). Times are stored as UTC; the schema is created and upgraded by the
Alembic migrations in ``core/store/migrations`` (``leadtap db upgrade``).
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC time")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


def read_back(model: type, values: dict) -> SimpleNamespace:
    """A row just inserted from ``values`` as reading it back gives it:
    every column of ``model`` (its default where not given) and times in UTC."""
    return SimpleNamespace(**{key: in_utc(values[key]) if key in values else default_of(column)
                              for key, column in columns_of(model)})


@functools.cache
def columns_of(model: type) -> tuple:
    columns = tuple(model.__table__.columns)
    made_by_the_database = [c.key for c in columns if c.server_default is not None
                            or (c.default is not None and not (c.default.is_scalar or c.default.is_callable))]
    if made_by_the_database:
        raise TypeError(f"read_back({model.__name__}): {', '.join(made_by_the_database)} take a value the database "
                        f"makes, which only reading the row back can tell")
    return tuple((column.key, column) for column in columns)


def default_of(column) -> Any:
    default = column.default
    if default is None:
        return None
    return default.arg(None) if default.is_callable else default.arg  # a callable default is wrapped to take a context


def in_utc(value: Any) -> Any:
    return value.astimezone(timezone.utc) if isinstance(value, datetime) else value


class Base(DeclarativeBase):
    pass


class Owner(Base):
    __tablename__ = "owners"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Position in the config's [[owners]] list; a removed owner keeps theirs,
    # so the rotation can continue after them.
    position: Mapped[int] = mapped_column(Integer, default=0)
    in_config: Mapped[bool] = mapped_column(Boolean, default=True)
    # Away (a holiday): out of the rotation from away_since until away_until (None: until back).
    away_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    away_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Rotation(Base):
    """Where the round-robin of one role stands; locked while a turn is given."""

    __tablename__ = "rotation"
    role: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))
    turns: Mapped[int] = mapped_column(BigInteger, default=0)


class Lead(Base):
    __tablename__ = "leads"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(100))
    company: Mapped[str | None] = mapped_column(String(300))
    message: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(100))
    type: Mapped[str | None] = mapped_column(String(100))  # HubSpot's lead type ([leads] types), if any
    status: Mapped[str] = mapped_column(String(100))
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pipeline: Mapped[str | None] = mapped_column(String(100))  # a [[pipelines]] name; None: the default pipeline
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"), index=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    # The lower-cased contact address: the extracted email, or the sender.
    contact: Mapped[str | None] = mapped_column(String(320), index=True)
    contact_domain: Mapped[str | None] = mapped_column(String(255), index=True)  # the part after the @
    subject: Mapped[str | None] = mapped_column(String(998))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What was repaired to read the message (a broken MIME structure, a charset, a header).
    warnings: Mapped[list | None] = mapped_column(JSON, default=list)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outreach_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # no reminders before then
    automation_stopped: Mapped[bool] = mapped_column(Boolean, default=False)  # a person moved it back
    # why automation could not move it, e.g. "not moved to Connected: needs phone"; cleared by a status change
    blocked: Mapped[str | None] = mapped_column(Text)
    follow_up_of: Mapped[int | None] = mapped_column(ForeignKey("leads.id", name="fk_leads_follow_up_of"))
    # When the lead became its owner's (None: at creation): reminders count from
    # the later of this and status_changed_at, so a new owner gets a fresh start.
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_leads_status_changed", "status", "status_changed_at"),)


class ThreadMessage(Base):
    """A Message-ID in a lead's thread: replies naming it join the lead."""

    __tablename__ = "lead_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(998), index=True)


class Opportunity(Base):
    __tablename__ = "opportunities"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), unique=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))
    title: Mapped[str] = mapped_column(String(500))
    stage: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fields: Mapped[dict] = mapped_column(JSON, default=dict)  # amount, close_date, and any other
    stage_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # entered won or lost
    lost_reason: Mapped[str | None] = mapped_column(String(200))
    # The staleness deadline its owner was last warned of, and when: warned once per deadline.
    warned_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_opportunities_stage_changed", "stage", "stage_changed_at"),
                      Index("ix_opportunities_created", "created_at"))


class OnboardingRecord(Base):
    """The hand-off of a won deal to onboarding: one per deal, whatever crashes."""

    __tablename__ = "onboardings"
    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunities.id"), unique=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"), index=True)
    state: Mapped[str] = mapped_column(String(20))  # open | done (its tasks all done)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Activity(Base):
    __tablename__ = "activities"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Task(Base):
    """A task of a lead: created when it enters a status with a task template, or by hand."""

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))
    title: Mapped[str] = mapped_column(String(500))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(20))  # open | done | cancelled
    # the status whose template made it: closed when the lead leaves it ([pipeline] tasks_on_leave)
    status: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(320))
    # An onboarding's task: its owner is the onboarding's, not the lead's.
    onboarding_id: Mapped[int | None] = mapped_column(ForeignKey("onboardings.id", name="fk_tasks_onboarding_id"),
                                                      index=True)

    __table_args__ = (Index("ix_tasks_state_due", "state", "due_at"),)


class LedgerEntry(Base):
    """One row per message seen in a mailbox: what became of it."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    identity: Mapped[str | None] = mapped_column(String(64), index=True)
    message_id: Mapped[str | None] = mapped_column(String(998))
    sender: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(998))
    outcome: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(String(200))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_messages_mailbox_uid"),)


class SeenMessage(Base):
    """A message's identity, once: the same message seen again is a duplicate."""

    __tablename__ = "seen_messages"
    identity: Mapped[str] = mapped_column(String(64), primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"))
    outcome: Mapped[str] = mapped_column(String(20))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MailboxState(Base):
    """The highest UID handled per mailbox and UIDVALIDITY (for unread_only = false)."""

    __tablename__ = "mailbox_state"
    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    folder: Mapped[str | None] = mapped_column(String(1000))  # the folder read (None: before schema 0010)


class Reminder(Base):
    """One reminder of one stay of a lead in a status, to one recipient:
    claimed before it is sent, so two sweeps never send it twice."""

    __tablename__ = "reminders"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    rule: Mapped[str] = mapped_column(String(200))
    stay_started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the lead's status_changed_at
    repeat: Mapped[int] = mapped_column(Integer)  # 0 for the first reminder of the stay
    recipient: Mapped[str] = mapped_column(String(320))
    task_id: Mapped[int] = mapped_column(Integer, default=0)  # a task rule's task; 0 for a status rule
    state: Mapped[str] = mapped_column(String(20))  # claimed | sent | failed (its recipient's server: for now)
    token: Mapped[str] = mapped_column(String(32))  # the claiming sweep's: only it confirms or releases
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # When its recipient's server first refused it for now (a full mailbox): tried again each sweep,
    # and the ladder counts the rung as gone out then, so it climbs past a mailbox that stays full.
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("lead_id", "rule", "stay_started_at", "repeat", "recipient", "task_id",
                         name="uq_reminders_claim"),
    )


class CommandReply(Base):
    """An owner's reply to a leadtap email, and what became of its commands:
    recorded once per message (its identity), with the confirmation it is owed."""

    __tablename__ = "command_replies"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(64), unique=True)  # the message's (its ledger row's)
    # What its sender wrote and signed (``core.use_cases.reply_changes.reply_identity``):
    # a copy with headers added is the same reply. None before schema 0009.
    content_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list] = mapped_column(JSON, default=list)  # its thread, for the confirmation's References
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(998))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)  # the token's (a digest's: the first named)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)  # it answered a digest: its commands name leads
    results: Mapped[list] = mapped_column(JSON, default=list)  # [{line, applied, words, lead_id}]
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestToken(Base):
    """The leads a digest listed, under its token's MAC: a reply to the
    digest acts on those leads only (and only while the token is young)."""

    __tablename__ = "digest_tokens"
    mac: Mapped[str] = mapped_column(String(32), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(320))
    lead_ids: Mapped[list] = mapped_column(JSON, default=list)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class OAuthToken(Base):
    """The tokens of one OAuth2 sign-in (a user, a client, a scope), shared by
    every worker: encrypted by the adapter (the columns hold ciphertext); a
    refresh is claimed by one worker at a time (``claimed_by``/``until``);
    the provider's last refusal is kept, with ``attention`` when a person
    must act (a revoked or expired grant, a wrong secret)."""

    __tablename__ = "oauth_tokens"
    credential: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(320))
    grant_type: Mapped[str] = mapped_column(String(40))
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refreshes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attention: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxRow:
    """The columns of a row owed through the outbox (``core.store.outbox.Outbox``)."""

    state: Mapped[str] = mapped_column(String(20))  # pending | claimed | sent | done | failed | dropped
    token: Mapped[str | None] = mapped_column(String(32))  # the claiming sender's
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # sent (or, a workflow's task, done)
    last_error: Mapped[str | None] = mapped_column(Text)


class Notification(OutboxRow, Base):
    """An email owed to an owner about a lead (``new_lead``): written in the
    transaction that made the lead theirs, sent after it commits — claimed
    first, once per (lead, recipient, kind, reply)."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)  # None: a digest reply's
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(50))
    reply_id: Mapped[int] = mapped_column(Integer, default=0)  # a confirmation's reply; 0 for the others

    __table_args__ = (
        UniqueConstraint("lead_id", "recipient", "kind", "reply_id", name="uq_notifications_once"),
        Index("ix_notifications_state_next", "state", "next_attempt_at"),
    )


class WorkflowStep(OutboxRow, Base):
    """A step of a status's workflow (``core.rules.workflows``) — or of a deal
    stage's — owed in the transaction that moved the lead (the deal) in, run
    at ``next_attempt_at`` through the outbox protocol (claimed once,
    retried) if it is still in that stay: (``status``, ``entered_at``).
    ``sent_at``: when it ran."""

    __tablename__ = "workflow_steps"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    deal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # a deal stage's step
    status: Mapped[str] = mapped_column(String(200))  # the lead's status, or the deal's stage
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(Integer)  # its place in the status's steps
    kind: Mapped[str] = mapped_column(String(20))  # task | email | assign | set
    fingerprint: Mapped[str] = mapped_column(String(16))  # what the step was: changed in the config, not run
    recipient: Mapped[str | None] = mapped_column(String(320))  # an email's, once sent
    message_id: Mapped[str | None] = mapped_column(String(998))  # an email to the contact's: its answer joins the lead

    __table_args__ = (
        UniqueConstraint("lead_id", "deal", "status", "entered_at", "step", name="uq_workflow_steps_once"),
        Index("ix_workflow_steps_state_next", "state", "next_attempt_at"),
    )


class ContactEmail(Base):
    """The last email of a template a contact was sent by a workflow: at most
    one in the step's ``once_per``. The row is the claim: two workers never
    both send (its key), and a step that is not sent gives it back."""

    __tablename__ = "contact_emails"
    contact: Mapped[str] = mapped_column(String(320), primary_key=True)
    template: Mapped[str] = mapped_column(String(100), primary_key=True)
    step_id: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(OutboxRow, Base):
    """An event owed to a webhook endpoint (``[[webhooks]]``): written in the
    transaction that made it, sent after it commits, through the outbox
    protocol; ``webhook_id`` is the same on every retry. A lead's events go
    out in order: one waits while an earlier one to the same endpoint does."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(50))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)  # None: a test ping
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    payload: Mapped[str] = mapped_column(Text)  # the event's JSON as POSTed (made once for every endpoint)
    answer: Mapped[str | None] = mapped_column(Text)  # the last HTTP status and the start of the body

    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),
                      Index("ix_webhook_deliveries_endpoint_lead", "endpoint", "lead_id", "id"))


class WebhookEndpoint(Base):
    """An endpoint that answered 410 Gone: nothing more goes to it until its config changes (its URL)."""

    __tablename__ = "webhook_endpoints"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    disabled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)


class MailboxLease(Base):
    """Which worker serves a mailbox, until when: renewed by its passes, free
    for another worker once it expires (its worker died)."""

    __tablename__ = "mailbox_leases"
    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Worker(Base):
    """A running ``leadtap run``, seen at each of its ingest jobs: the live ones share the mailboxes."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
