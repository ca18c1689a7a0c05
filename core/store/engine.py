"""The database handle: engines for SQLite and PostgreSQL with their
settings, sessions and transactions, and the schema's migrations.

Made by the composition root, never at import."""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

if TYPE_CHECKING:  # the ORM is loaded by the first session: a listing through Core starts without it
    from sqlalchemy.orm import Session

from leadtap.core.errors import DatabaseUnavailable, SchemaError

MIGRATIONS = Path(__file__).with_name("migrations")
REVISION_RE = re.compile(r"^revision = ['\"](\w+)['\"]", re.M)
DOWN_REVISION_RE = re.compile(r"^down_revision = (?:['\"](\w+)['\"]|None)", re.M)


class Database:
    """The engine and its sessions; made by the composition root, never at import."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)

    @functools.cached_property
    def sessions(self):
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads, rolled back at the end: on SQLite a
        deferred BEGIN, so a long read (an export) never holds the write lock."""
        with self.sessions() as session:
            session.connection(execution_options={"leadtap_read_only": True})
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def reading_connection(self) -> Iterator[Connection]:
        """A connection that only reads, through SQLAlchemy Core (no ORM: a
        listing starts sooner), rolled back at the end; on SQLite a deferred BEGIN."""
        with self.engine.connect().execution_options(leadtap_read_only=True) as connection:
            try:
                yield connection
            finally:
                connection.rollback()

    @contextmanager
    def rehearsal(self) -> Iterator[Rehearsal]:
        """A dry run's database: its work is all rolled back at the end."""
        with self.sessions() as session:
            session.begin()
            try:
                yield Rehearsal(session)
            finally:
                session.rollback()

    def check_schema(self) -> None:
        """Raise ``SchemaError`` unless the schema is at the newest migration.
        A SQLite file that does not exist is not created here (connecting
        would): only ``db upgrade`` makes it."""
        missing = missing_sqlite_file(self.engine)
        if missing is not None:
            raise SchemaError(f"there is no SQLite database at {missing!r}; run: leadtap db upgrade (it creates it)")
        current, head = schema_revisions(self.engine)
        if current is None:
            raise SchemaError("the database has no leadtap schema; run: leadtap db upgrade")
        if current != head:
            raise SchemaError(f"the database schema is at {current}, this leadtap needs {head}; run: leadtap db upgrade")

    def dispose(self) -> None:
        self.engine.dispose()


class Rehearsal:
    """Stands for a ``Database`` in a dry run: each transaction is a savepoint
    of one transaction that is rolled back in the end, so the run goes through
    the very code that would make its changes, and shows them, and keeps none."""

    def __init__(self, session: Session):
        self.session = session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.session.begin_nested():
            yield self.session


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
        if sqlite_file(engine) is not None:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit survives a power cut. With NORMAL a commit may roll back
        # after the IMAP \\Seen flag was already set, and the message is lost.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get("leadtap_read_only")
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def sqlite_file(engine: Engine) -> str | None:
    """The engine's SQLite database file, as the URL names it (None: not
    SQLite, or a database in memory)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    return database


def missing_sqlite_file(engine: Engine) -> str | None:
    """The SQLite file's path when the engine's database is a file that does not exist."""
    database = sqlite_file(engine)
    if database is None or database.startswith("file:"):  # a URI: SQLite reads it, not a path
        return None
    return None if Path(database).exists() else database


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """The database's schema revision (None: no schema) and the newest one.
    Read without Alembic, whose import costs more than most commands take."""
    try:
        with engine.connect().execution_options(leadtap_read_only=True) as connection:  # never waits for a writer
            current = None
            if inspect(connection).has_table("alembic_version"):
                current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise DatabaseUnavailable(unreachable(engine, exc)) from None
    return current, head_revision()


@functools.cache
def head_revision() -> str:
    """The newest migration, from the scripts' own ``revision`` and
    ``down_revision`` lines (``tests/test_migrations.py`` holds it equal to
    Alembic's own reading)."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        revisions.add(REVISION_RE.search(source).group(1))
        parent = DOWN_REVISION_RE.search(source)
        if parent and parent.group(1):
            parents.add(parent.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def unreachable(engine: Engine, exc: Exception) -> str:
    """Why the database cannot be opened; for SQLite, the file and its directory."""
    database = sqlite_file(engine)
    if database is None:
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
