"""Every migration applies to a database that already holds leads, on SQLite
and PostgreSQL: an upgrade never strands an existing install."""

from __future__ import annotations

import json

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text

from leadtap.core.store.engine import MIGRATIONS, make_engine, upgrade_schema


def upgrade_to(engine, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def test_an_install_with_leads_activities_and_opportunities_upgrades_to_the_newest_schema(database_url):
    engine = make_engine(database_url)
    try:
        upgrade_to(engine, "0002")
        with engine.begin() as c:
            c.execute(text("INSERT INTO owners (id, email, name, roles, active, position, in_config) "
                           "VALUES (1, 'ana@example.com', 'Ana', '[]', true, 0, true)"))
            c.execute(text("INSERT INTO leads (id, name, email, message, fields, source, status, status_changed_at, "
                           "owner_id, mailbox, contact, subject, received_at, created_at) VALUES (1, 'Jo', "
                           "'jo@client.test', 'Hi', '{}', 'Email', 'New', '2026-01-01 00:00:00', 1, 'sales', "
                           "'jo@client.test', 'Hi', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
            c.execute(text("INSERT INTO activities (lead_id, kind, at, summary, details) "
                           "VALUES (1, 'created', '2026-01-01 00:00:00', 'Hi', '{}')"))
            c.execute(text("INSERT INTO opportunities (lead_id, owner_id, title, stage, created_at) "
                           "VALUES (1, 1, 'Jo', 'Discovery', '2026-01-01 00:00:00')"))
            c.execute(text("INSERT INTO leads (id, name, email, message, fields, source, status, status_changed_at, "
                           "owner_id, mailbox, contact, subject, received_at, created_at) VALUES (2, 'Al', "
                           "'al@client.test', 'Hi', '{}', 'Email', 'New', '2026-01-01 00:00:00', 1, 'sales', "
                           "'al@client.test', 'Hi', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
            c.execute(text("INSERT INTO activities (lead_id, kind, at, summary, details) "
                           "VALUES (2, 'stage', '2026-01-09 10:00:00', 'Discovery → Proposal', '{}')"))
            c.execute(text("INSERT INTO opportunities (lead_id, owner_id, title, stage, created_at) "
                           "VALUES (2, 1, 'Al', 'Proposal', '2026-01-01 00:00:00')"))
            c.execute(text("INSERT INTO reminders (lead_id, rule, stay_started_at, repeat, recipient, state, token, "
                           "claimed_at) VALUES (1, 'stale', '2026-01-01 00:00:00', 0, 'ana@example.com', 'sent', "
                           "'t', '2026-01-03 00:00:00')"))

        before, after = upgrade_schema(engine)

        assert (before, after) == ("0002", "0016")
        with engine.begin() as c:
            assert c.execute(text("SELECT id, automation_stopped, follow_up_of, snoozed_until FROM leads "
                                  "ORDER BY id")).all() == [(1, False, None, None), (2, False, None, None)]
            assert c.execute(text("SELECT count(*) FROM activities")).scalar() == 2
            assert c.execute(text("SELECT lead_id, task_id FROM reminders")).all() == [(1, 0)]
            assert c.execute(text("SELECT assigned_at FROM leads")).all() == [(None,), (None,)]
            assert c.execute(text("SELECT blocked FROM leads")).all() == [(None,), (None,)]  # nothing said yet
            assert c.execute(text("SELECT contact, contact_domain FROM leads ORDER BY id")).all()[1] == (
                "al@client.test", "client.test")  # the domain of an existing contact, filled in
            deal = c.execute(text("SELECT stage, fields, closed_at FROM opportunities WHERE lead_id = 1")).one()
            fields = deal[1] if isinstance(deal[1], dict) else json.loads(deal[1])  # PostgreSQL reads JSON as a dict
            assert deal[0] == "Discovery" and fields == {} and deal[2] is None
            made = c.execute(text("SELECT created_at, stage_changed_at FROM opportunities ORDER BY lead_id")).all()
            assert made[0][0] == made[0][1]  # an older deal entered its stage when it was made,
            assert str(made[1][1]).startswith("2026-01-09 10:00")  # or at its lead's last stage move
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_models_schema(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from leadtap.core.store.db import Base

    engine = make_engine(database_url)
    try:
        upgrade_schema(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_the_head_read_from_the_scripts_is_alembics_own():
    """Commands check the schema without importing Alembic: the same answer."""
    from alembic.script import ScriptDirectory

    from leadtap.core.store.engine import MIGRATIONS, head_revision

    assert head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head() == "0016"
