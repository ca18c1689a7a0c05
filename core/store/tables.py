"""The tables, as SQLAlchemy Core sees them: what a command that only reads
(``leads list``) needs, without the ORM — ``core.store.db`` maps its classes
onto these. The same tables run on SQLite (the default, one file) and
PostgreSQL (several workers). Times are stored as UTC; the schema is created
and upgraded by the Alembic migrations in ``core/store/migrations``
(``leadtap db upgrade``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


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


def outbox_columns() -> list[Column]:
    """The columns of a row owed through the outbox (``core.store.outbox.Outbox``)."""
    return [
        Column("state", String(20), nullable=False),  # pending | claimed | sent | done | failed | dropped
        Column("token", String(32)),  # the claiming sender's
        Column("claimed_at", UTCDateTime),
        Column("attempts", Integer, default=0, nullable=False),
        Column("next_attempt_at", UTCDateTime, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime),  # sent (or, a workflow's task, done)
        Column("last_error", Text),
    ]


owners = Table(
    "owners", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), unique=True, nullable=False),
    Column("name", String(200), nullable=False),
    Column("roles", JSON, default=list, nullable=False),
    Column("active", Boolean, default=True, nullable=False),
    # Position in the config's [[owners]] list; a removed owner keeps theirs,
    # so the rotation can continue after them.
    Column("position", Integer, default=0, nullable=False),
    Column("in_config", Boolean, default=True, nullable=False),
    # Away (a holiday): out of the rotation from away_since until away_until (None: until back).
    Column("away_since", UTCDateTime),
    Column("away_until", UTCDateTime),
)


rotation = Table(
    "rotation", metadata,
    Column("role", String(100), primary_key=True),
    Column("last_owner_id", ForeignKey("owners.id")),
    Column("turns", BigInteger, default=0, nullable=False),
)


leads = Table(
    "leads", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(300)),
    Column("email", String(320)),
    Column("phone", String(100)),
    Column("company", String(300)),
    Column("message", Text),
    Column("fields", JSON, default=dict, nullable=False),
    Column("source", String(100), nullable=False),
    Column("type", String(100)),  # HubSpot's lead type ([leads] types), if any
    Column("status", String(100), nullable=False),
    Column("status_changed_at", UTCDateTime, nullable=False),
    Column("pipeline", String(100)),  # a [[pipelines]] name; None: the default pipeline
    Column("owner_id", ForeignKey("owners.id"), index=True),
    Column("mailbox", String(200), nullable=False),
    # The lower-cased contact address: the extracted email, or the sender.
    Column("contact", String(320), index=True),
    Column("contact_domain", String(255), index=True),  # the part after the @
    Column("subject", String(998)),
    Column("received_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # What was repaired to read the message (a broken MIME structure, a charset, a header).
    Column("warnings", JSON, default=list),
    Column("last_activity_at", UTCDateTime),
    Column("last_outreach_at", UTCDateTime),
    Column("snoozed_until", UTCDateTime),  # no reminders before then
    Column("automation_stopped", Boolean, default=False, nullable=False),  # a person moved it back
    # why automation could not move it, e.g. "not moved to Connected: needs phone"; cleared by a status change
    Column("blocked", Text),
    Column("follow_up_of", ForeignKey("leads.id", name="fk_leads_follow_up_of")),
    # When the lead became its owner's (None: at creation): reminders count from
    # the later of this and status_changed_at, so a new owner gets a fresh start.
    Column("assigned_at", UTCDateTime),
    Index("ix_leads_status_changed", "status", "status_changed_at"),
)


lead_messages = Table(
    "lead_messages", metadata,
    Column("id", Integer, primary_key=True),
    Column("lead_id", ForeignKey("leads.id"), index=True, nullable=False),
    Column("message_id", String(998), index=True, nullable=False),
)


opportunities = Table(
    "opportunities", metadata,
    Column("id", Integer, primary_key=True),
    Column("lead_id", ForeignKey("leads.id"), unique=True, nullable=False),
    Column("owner_id", ForeignKey("owners.id")),
    Column("title", String(500), nullable=False),
    Column("stage", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("fields", JSON, default=dict, nullable=False),  # amount, close_date, and any other
    Column("stage_changed_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),  # entered won or lost
    Column("lost_reason", String(200)),
    # The staleness deadline its owner was last warned of, and when: warned once per deadline.
    Column("warned_for", UTCDateTime),
    Column("warned_at", UTCDateTime),
    Index("ix_opportunities_stage_changed", "stage", "stage_changed_at"), Index("ix_opportunities_created", "created_at"),
)


onboardings = Table(
    "onboardings", metadata,
    Column("id", Integer, primary_key=True),
    Column("opportunity_id", ForeignKey("opportunities.id"), unique=True, nullable=False),
    Column("lead_id", ForeignKey("leads.id"), index=True, nullable=False),
    Column("owner_id", ForeignKey("owners.id"), index=True),
    Column("state", String(20), nullable=False),  # open | done (its tasks all done)
    Column("created_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime),
)


activities = Table(
    "activities", metadata,
    Column("id", Integer, primary_key=True),
    Column("lead_id", ForeignKey("leads.id"), index=True, nullable=False),
    Column("kind", String(50), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("summary", Text, default="", nullable=False),
    Column("details", JSON, default=dict, nullable=False),
)


tasks = Table(
    "tasks", metadata,
    Column("id", Integer, primary_key=True),
    Column("lead_id", ForeignKey("leads.id"), index=True, nullable=False),
    Column("owner_id", ForeignKey("owners.id")),
    Column("title", String(500), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("state", String(20), nullable=False),  # open | done | cancelled
    # the status whose template made it: closed when the lead leaves it ([pipeline] tasks_on_leave)
    Column("status", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("closed_by", String(320)),
    # An onboarding's task: its owner is the onboarding's, not the lead's.
    Column("onboarding_id", ForeignKey("onboardings.id", name="fk_tasks_onboarding_id"), index=True),
    Index("ix_tasks_state_due", "state", "due_at"),
)


messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(200), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("identity", String(64), index=True),
    Column("message_id", String(998)),
    Column("sender", String(320)),
    Column("subject", String(998)),
    Column("outcome", String(20), index=True, nullable=False),
    Column("reason", String(200)),
    Column("lead_id", ForeignKey("leads.id"), index=True),
    Column("error", Text),
    Column("attempts", Integer, default=0, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_messages_mailbox_uid"),
)


seen_messages = Table(
    "seen_messages", metadata,
    Column("identity", String(64), primary_key=True),
    Column("lead_id", ForeignKey("leads.id")),
    Column("outcome", String(20), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
)


mailbox_state = Table(
    "mailbox_state", metadata,
    Column("mailbox", String(200), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, default=0, nullable=False),
    Column("folder", String(1000)),  # the folder read (None: before schema 0010)
)


reminders = Table(
    "reminders", metadata,
    Column("id", Integer, primary_key=True),
    Column("lead_id", ForeignKey("leads.id"), index=True, nullable=False),
    Column("rule", String(200), nullable=False),
    Column("stay_started_at", UTCDateTime, nullable=False),  # the lead's status_changed_at
    Column("repeat", Integer, nullable=False),  # 0 for the first reminder of the stay
    Column("recipient", String(320), nullable=False),
    Column("task_id", Integer, default=0, nullable=False),  # a task rule's task; 0 for a status rule
    Column("state", String(20), nullable=False),  # claimed | sent | failed (its recipient's server: for now)
    Column("token", String(32), nullable=False),  # the claiming sweep's: only it confirms or releases
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    # When its recipient's server first refused it for now (a full mailbox): tried again each sweep,
    # and the ladder counts the rung as gone out then, so it climbs past a mailbox that stays full.
    Column("first_failed_at", UTCDateTime),
    UniqueConstraint("lead_id", "rule", "stay_started_at", "repeat", "recipient", "task_id", name="uq_reminders_claim"),
)


command_replies = Table(
    "command_replies", metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String(64), unique=True, nullable=False),  # the message's (its ledger row's)
    # What its sender wrote and signed (``core.use_cases.reply_changes.reply_identity``):
    # a copy with headers added is the same reply. None before schema 0009.
    Column("content_key", String(64), unique=True),
    Column("mailbox", String(200), nullable=False),
    Column("message_id", String(998)),
    Column("references", JSON, default=list, nullable=False),  # its thread, for the confirmation's References
    Column("sender", String(320), nullable=False),
    Column("subject", String(998)),
    Column("lead_id", ForeignKey("leads.id"), index=True),  # the token's (a digest's: the first named)
    Column("digest", Boolean, default=False, nullable=False),  # it answered a digest: its commands name leads
    Column("results", JSON, default=list, nullable=False),  # [{line, applied, words, lead_id}]
    Column("received_at", UTCDateTime, nullable=False),
)


digest_tokens = Table(
    "digest_tokens", metadata,
    Column("mac", String(32), primary_key=True),
    Column("recipient", String(320), nullable=False),
    Column("lead_ids", JSON, default=list, nullable=False),
    Column("issued_at", UTCDateTime, index=True, nullable=False),
)


oauth_tokens = Table(
    "oauth_tokens", metadata,
    Column("credential", String(64), primary_key=True),
    Column("username", String(320), nullable=False),
    Column("grant_type", String(40), nullable=False),
    Column("refresh_token", LargeBinary),
    Column("access_token", LargeBinary),
    Column("expires_at", UTCDateTime),
    Column("refreshed_at", UTCDateTime),
    Column("refreshes", Integer, default=0, server_default="0", nullable=False),
    Column("claimed_by", String(200)),
    Column("claimed_until", UTCDateTime),
    Column("error", Text),
    Column("error_at", UTCDateTime),
    Column("attention", Boolean, default=False, server_default=false(), nullable=False),
    Column("signed_in_at", UTCDateTime),
)


notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True),
    Column("lead_id", ForeignKey("leads.id"), index=True),  # None: a digest reply's
    Column("recipient", String(320), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("reply_id", Integer, default=0, nullable=False),  # a confirmation's reply; 0 for the others
    *outbox_columns(),
    UniqueConstraint("lead_id", "recipient", "kind", "reply_id", name="uq_notifications_once"), Index("ix_notifications_state_next", "state", "next_attempt_at"),
)


workflow_steps = Table(
    "workflow_steps", metadata,
    Column("id", Integer, primary_key=True),
    Column("lead_id", ForeignKey("leads.id"), index=True, nullable=False),
    Column("deal", Boolean, default=False, server_default=false(), nullable=False),  # a deal stage's step
    Column("status", String(200), nullable=False),  # the lead's status, or the deal's stage
    Column("entered_at", UTCDateTime, nullable=False),
    Column("step", Integer, nullable=False),  # its place in the status's steps
    Column("kind", String(20), nullable=False),  # task | email | assign | set
    Column("fingerprint", String(16), nullable=False),  # what the step was: changed in the config, not run
    Column("recipient", String(320)),  # an email's, once sent
    Column("message_id", String(998)),  # an email to the contact's: its answer joins the lead
    *outbox_columns(),
    UniqueConstraint("lead_id", "deal", "status", "entered_at", "step", name="uq_workflow_steps_once"), Index("ix_workflow_steps_state_next", "state", "next_attempt_at"),
)


contact_emails = Table(
    "contact_emails", metadata,
    Column("contact", String(320), primary_key=True),
    Column("template", String(100), primary_key=True),
    Column("step_id", Integer, nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
)


webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("endpoint", String(100), nullable=False),
    Column("event", String(50), nullable=False),
    Column("lead_id", ForeignKey("leads.id"), index=True),  # None: a test ping
    Column("webhook_id", String(64), unique=True, nullable=False),
    Column("payload", Text, nullable=False),  # the event's JSON as POSTed (made once for every endpoint)
    Column("answer", Text),  # the last HTTP status and the start of the body
    *outbox_columns(),
    Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"), Index("ix_webhook_deliveries_endpoint_lead", "endpoint", "lead_id", "id"),
)


webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("name", String(100), primary_key=True),
    Column("url", Text, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)


mailbox_leases = Table(
    "mailbox_leases", metadata,
    Column("mailbox", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
)


workers = Table(
    "workers", metadata,
    Column("id", String(200), primary_key=True),
    Column("seen_at", UTCDateTime, nullable=False),
)


def of_pipeline(key: str | None):
    """The leads of the pipeline whose ``pipeline`` column holds ``key`` (None: the default pipeline)."""
    return leads.c.pipeline.is_(None) if key is None else leads.c.pipeline == key
