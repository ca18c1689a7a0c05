"""Persistence: the SQLAlchemy 2.x tables and the database handle.

The same models run on SQLite (the default, one file) and PostgreSQL (several
workers). Times are stored as UTC; the schema is created and upgraded by the
Alembic migrations in ``core/migrations`` (``leadtap db upgrade``).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from leadtap.core.errors import DatabaseUnavailable, SchemaError

MIGRATIONS = Path(__file__).with_name("migrations")


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
    status: Mapped[str] = mapped_column(String(100))
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"), index=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    # The lower-cased contact address: the extracted email, or the sender.
    contact: Mapped[str | None] = mapped_column(String(320), index=True)
    subject: Mapped[str | None] = mapped_column(String(998))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What was repaired to read the message (a broken MIME structure, a charset, a header).
    warnings: Mapped[list | None] = mapped_column(JSON, default=list)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outreach_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # no reminders before then
    automation_stopped: Mapped[bool] = mapped_column(Boolean, default=False)  # a person moved it back
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
    state: Mapped[str] = mapped_column(String(20))  # claimed | sent
    token: Mapped[str] = mapped_column(String(32))  # the claiming sweep's: only it confirms or releases
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("lead_id", "rule", "stay_started_at", "repeat", "recipient", "task_id",
                         name="uq_reminders_claim"),
    )


class CommandReply(Base):
    """An owner's reply to a leadtap email, and what became of its commands:
    recorded once per message (its identity), with the confirmation it is owed."""

    __tablename__ = "command_replies"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(64), unique=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list] = mapped_column(JSON, default=list)  # its thread, for the confirmation's References
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(998))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)  # the token's (a digest's: the first named)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)  # it answered a digest: its commands name leads
    results: Mapped[list] = mapped_column(JSON, default=list)  # [{line, applied, words, lead_id}]
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Notification(Base):
    """An email owed to an owner about a lead (``new_lead``): written in the
    transaction that made the lead theirs, sent after it commits — claimed
    first, once per (lead, recipient, kind, reply)."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)  # None: a digest reply's
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(50))
    reply_id: Mapped[int] = mapped_column(Integer, default=0)  # a confirmation's reply; 0 for the others
    state: Mapped[str] = mapped_column(String(20))  # pending | claimed | sent | failed | dropped
    token: Mapped[str | None] = mapped_column(String(32))  # the claiming sender's
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("lead_id", "recipient", "kind", "reply_id", name="uq_notifications_once"),
        Index("ix_notifications_state_next", "state", "next_attempt_at"),
    )


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


class Database:
    """The engine and its sessions; made by the composition root, never at import."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def check_schema(self) -> None:
        """Raise ``SchemaError`` unless the schema is at the newest migration."""
        current, head = schema_revisions(self.engine)
        if current is None:
            raise SchemaError("the database has no leadtap schema; run: leadtap db upgrade")
        if current != head:
            raise SchemaError(f"the database schema is at {current}, this leadtap needs {head}; run: leadtap db upgrade")

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        configure_sqlite(engine)
        return engine
    # Every network call has a timeout: the connection, a peer that went
    # silent (keepalives, TCP_USER_TIMEOUT), a statement that never returns.
    connect_args = {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
    } if "psycopg" in url else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys; BEGIN IMMEDIATE so that savepoints work
    and two processes queue for the write lock instead of failing mid-transaction."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit survives a power cut. With NORMAL a commit may roll back
        # after the IMAP \\Seen flag was already set, and the message is lost.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailable(unreachable(engine, exc)) from None
    return current, head


def unreachable(engine: Engine, exc: Exception) -> str:
    """Why the database cannot be opened; for SQLite, the file and its directory."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return f"cannot reach the database: {describe_db_error(exc)}"
    file = Path(database)
    hint = (f"; the directory {str(file.parent)!r} does not exist" if not file.parent.is_dir()
            else "; is the directory writable for this user?")
    return f"cannot open the SQLite database {str(file)!r}: {describe_db_error(exc)}{hint}"


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest migration; return (before, after)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    before, head = schema_revisions(engine)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    return before, head


def describe_db_error(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
