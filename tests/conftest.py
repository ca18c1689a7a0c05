"""Real servers for the test run: a Dovecot of our own and PostgreSQL.

Locally a missing server skips the tests that need it, with a loud reason; in
CI (``CI=true``) a missing server fails them instead.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text

from leadtap.dovecot import Dovecot, DovecotUnavailable
from tests.helpers import Mailbox

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get("LEADTAP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def unavailable(what: str, why: str) -> None:
    message = f"{what} is not available: {why}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: nothing may be skipped)")
    pytest.skip(f"!!! {message} — these tests did NOT run")


def started(server: Dovecot) -> Iterator[Dovecot]:
    """A Dovecot for a fixture to yield, stopped after; one that does not start is unavailable."""
    try:
        server.start()
    except DovecotUnavailable as exc:
        server.stop()
        unavailable("Dovecot", str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot():
    yield from started(Dovecot())


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Mailbox:
    """A fresh IMAP user (an empty INBOX) for this test."""
    return Mailbox(dovecot, f"u{uuid.uuid4().hex[:12]}", dovecot.password)


@pytest.fixture(scope="session")
def postgres_admin():
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:  # any failure to connect means "no PostgreSQL here"
        engine.dispose()
        unavailable("PostgreSQL", f"{POSTGRES_URL}: {str(exc).splitlines()[0]}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin) -> str:
    """A URL to an empty schema of its own in the test PostgreSQL database."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with postgres_admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with postgres_admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """Every database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leadtap.db'}"
    return request.getfixturevalue("postgres_url")
