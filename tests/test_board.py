"""How many leads in each status, and in what order (Hanna's board): ``leads
list --sort --desc --limit``, ``leads board``; a status renamed in the config
(``leads rename-status``, and ``check`` naming the leads it stranded). On
SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from leadtap.core.store.db import Lead
from tests.test_reminder_ladder import rows
from tests.test_reminders import DAY, NOW, OWNERS, Remind, remind, smtp  # noqa: F401  (the fixtures)


def seed(remind: Remind) -> list[int]:
    """Five leads: statuses, owners and times that sort differently each way."""
    made = [("Cy", "ben@example.com", "Contacted", 1), ("Al", "ana@example.com", "New", 5),
            ("Bo", None, "New", 3), ("Di", "ana@example.com", "Disqualified", 2), ("Ed", "ben@example.com", "New", 4)]
    ids = [remind.add_lead(f"{name} Person", owner, status, since=NOW - days * DAY) for name, owner, status, days in made]
    app = remind.app()
    try:
        with app.db.transaction() as session:  # Al was active yesterday: the least stale
            session.execute(update(Lead).where(Lead.id == ids[1]).values(last_activity_at=NOW - DAY))
    finally:
        app.close()
    return ids


def listed(remind: Remind, *args: str) -> list[str]:
    code, out, err = remind.cli("leads", "list", "--format", "json", *args)
    assert code == 0, err
    return [lead["name"].split()[0] for lead in json.loads(out)]


def test_leads_are_listed_in_the_order_asked_and_as_many_as_asked(remind, smtp):
    remind.configure("")
    seed(remind)

    assert listed(remind) == ["Cy", "Al", "Bo", "Di", "Ed"]
    assert listed(remind, "--sort", "received") == ["Al", "Ed", "Bo", "Di", "Cy"]
    assert listed(remind, "--sort", "received", "--desc", "--limit", "2") == ["Cy", "Di"]
    assert listed(remind, "--sort", "status") == ["Al", "Bo", "Ed", "Cy", "Di"]  # the pipeline's order
    assert listed(remind, "--sort", "owner") == ["Al", "Di", "Cy", "Ed", "Bo"]  # no owner last
    assert listed(remind, "--sort", "stale", "--limit", "3") == ["Ed", "Bo", "Di"]
    with pytest.raises(SystemExit) as usage:
        remind.cli("leads", "list", "--limit", "0")
    assert usage.value.code == 2 and "1 to 1000000 is expected" in remind.capsys.readouterr().err


def test_the_board_counts_each_status_and_shows_its_first_leads(remind, smtp):
    remind.configure("")
    seed(remind)

    code, out, err = remind.cli("leads", "board", "--sort", "received", "--limit", "2")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split("  ")[0].strip() == "New (3)" and "Contacted (1)" in lines[0] and "Qualified (0)" in lines[0]
    assert lines[2].startswith("#2 Al Person") and lines[3].startswith("#5 Ed Person") and lines[4].startswith("…")
    assert lines[-1] == "(5 leads, 4 open)"
    code, out, _ = remind.cli("leads", "board", "--owner", "ana@example.com", "--format", "json")
    columns = {c["status"]: (c["count"], [lead["id"] for lead in c["leads"]]) for c in json.loads(out)}
    assert columns["New"] == (1, [2]) and columns["Disqualified"] == (1, [4]) and columns["Contacted"] == (0, [])


def test_a_status_renamed_in_the_config_strands_nothing(remind, smtp):
    remind.configure("")
    ids = seed(remind)
    stay = rows(remind, select(Lead.status_changed_at).where(Lead.id == ids[0]))[0][0]
    renamed = OWNERS.replace("[[owners]]", '[leads]\nstatuses = ["New", "Attempting", "Connected", "Offer submitted", '
                                           '"Qualified", "Disqualified"]\n\n[[owners]]', 1)
    remind.configure("")
    remind.path.write_text(remind.path.read_text().replace(OWNERS, renamed))

    code, out, _ = remind.cli("check")
    assert "FAIL  statuses: leads in statuses no longer configured: 1 in 'Contacted'; move them with: leadtap " \
           "leads rename-status 'Contacted' NEW" in out
    assert listed(remind, "--status", "Contacted") == ["Cy"]  # still listed by the name it has
    code, out, _ = remind.cli("leads", "board", "--format", "json")
    assert [(c["status"], c["configured"]) for c in json.loads(out)][-1] == ("Contacted", False)

    for args, words in [(("Contacted", "Talking"), "unknown status 'Talking'"),
                        (("New", "Connected"), "'New' is still a configured status"),
                        (("Contact", "Connected"), "no lead is in 'Contact'")]:
        code, out, err = remind.cli("leads", "rename-status", *args)
        assert (code, out) == (1, "") and words in err, err
    code, out, err = remind.cli("leads", "rename-status", "Contacted", "connected", "--dry-run")
    assert code == 0 and out.startswith("would move 1 lead from 'Contacted'") and listed(remind, "--status",
                                                                                         "Contacted") == ["Cy"]

    code, out, err = remind.cli("leads", "rename-status", "Contacted", "connected")

    assert code == 0 and out.startswith("moved 1 lead from 'Contacted' (no longer configured) to 'Connected'"), err
    assert rows(remind, select(Lead.status, Lead.status_changed_at).where(Lead.id == ids[0])) == [("Connected", stay)]
    assert "ok    statuses: every lead is in a configured status" in remind.cli("check")[1]
