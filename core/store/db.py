"""The ORM: leadtap's classes, each mapped onto its table in
``core.store.tables`` (``core.store.engine`` opens them)."""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from sqlalchemy.orm import DeclarativeBase

from leadtap.core.store import tables
UTCDateTime = tables.UTCDateTime  # the migrations name it here


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
    metadata = tables.metadata


class Owner(Base):
    __table__ = tables.owners


class Rotation(Base):
    """Where the round-robin of one role stands; locked while a turn is given."""

    __table__ = tables.rotation


class Lead(Base):
    __table__ = tables.leads


class ThreadMessage(Base):
    """A Message-ID in a lead's thread: replies naming it join the lead."""

    __table__ = tables.lead_messages


class Opportunity(Base):
    __table__ = tables.opportunities


class OnboardingRecord(Base):
    """The hand-off of a won deal to onboarding: one per deal, whatever crashes."""

    __table__ = tables.onboardings


class Activity(Base):
    __table__ = tables.activities


class Task(Base):
    """A task of a lead: created when it enters a status with a task template, or by hand."""

    __table__ = tables.tasks


class LedgerEntry(Base):
    """One row per message seen in a mailbox: what became of it."""

    __table__ = tables.messages


class SeenMessage(Base):
    """A message's identity, once: the same message seen again is a duplicate."""

    __table__ = tables.seen_messages


class MailboxState(Base):
    """The highest UID handled per mailbox and UIDVALIDITY (for unread_only = false)."""

    __table__ = tables.mailbox_state


class Reminder(Base):
    """One reminder of one stay of a lead in a status, to one recipient:
    claimed before it is sent, so two sweeps never send it twice."""

    __table__ = tables.reminders


class CommandReply(Base):
    """An owner's reply to a leadtap email, and what became of its commands:
    recorded once per message (its identity), with the confirmation it is owed."""

    __table__ = tables.command_replies


class DigestToken(Base):
    """The leads a digest listed, under its token's MAC: a reply to the
    digest acts on those leads only (and only while the token is young)."""

    __table__ = tables.digest_tokens


class OAuthToken(Base):
    """The tokens of one OAuth2 sign-in (a user, a client, a scope), shared by
    every worker: encrypted by the adapter (the columns hold ciphertext); a
    refresh is claimed by one worker at a time (``claimed_by``/``until``);
    the provider's last refusal is kept, with ``attention`` when a person
    must act (a revoked or expired grant, a wrong secret)."""

    __table__ = tables.oauth_tokens


class Notification(Base):
    """An email owed to an owner about a lead (``new_lead``): written in the
    transaction that made the lead theirs, sent after it commits — claimed
    first, once per (lead, recipient, kind, reply)."""

    __table__ = tables.notifications


class WorkflowStep(Base):
    """A step of a status's workflow (``core.rules.workflows``) — or of a deal
    stage's — owed in the transaction that moved the lead (the deal) in, run
    at ``next_attempt_at`` through the outbox protocol (claimed once,
    retried) if it is still in that stay: (``status``, ``entered_at``).
    ``sent_at``: when it ran."""

    __table__ = tables.workflow_steps


class ContactEmail(Base):
    """The last email of a template a contact was sent by a workflow: at most
    one in the step's ``once_per``. The row is the claim: two workers never
    both send (its key), and a step that is not sent gives it back."""

    __table__ = tables.contact_emails


class WebhookDelivery(Base):
    """An event owed to a webhook endpoint (``[[webhooks]]``): written in the
    transaction that made it, sent after it commits, through the outbox
    protocol; ``webhook_id`` is the same on every retry. A lead's events go
    out in order: one waits while an earlier one to the same endpoint does."""

    __table__ = tables.webhook_deliveries


class WebhookEndpoint(Base):
    """An endpoint that answered 410 Gone: nothing more goes to it until its config changes (its URL)."""

    __table__ = tables.webhook_endpoints


class MailboxLease(Base):
    """Which worker serves a mailbox, until when: renewed by its passes, free
    for another worker once it expires (its worker died)."""

    __table__ = tables.mailbox_leases


class Worker(Base):
    """A running ``leadtap run``, seen at each of its ingest jobs: the live ones share the mailboxes."""

    __table__ = tables.workers
