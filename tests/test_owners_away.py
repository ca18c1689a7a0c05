"""An owner away (a holiday): out of the rotation — for mail's new leads,
leads entered by hand and the ladder's reassignments — their leads'
reminders to the escalation role (or waiting), until the day they are back
or they say so; from the command line and by reply. On SQLite and
PostgreSQL, mail to a real SMTP server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from leadtap.core.store.db import Owner
from tests.test_reminder_ladder import LADDER, owner_of, rows
from tests.test_reminders import DAY, NOW, Remind, remind, smtp  # noqa: F401  (the fixtures)


def away(remind: Remind, email: str, since: datetime, until: datetime | None) -> None:
    app = remind.app()
    try:
        with app.ready_database().transaction() as session:
            session.execute(update(Owner).where(Owner.email == email).values(away_since=since, away_until=until))
    finally:
        app.close()


def listed(remind: Remind) -> dict[str, dict]:
    code, out, err = remind.cli("owners", "list", "--format", "json")
    assert code == 0, err
    return {row["email"]: row for row in json.loads(out)}


def test_an_owner_away_takes_no_new_leads_until_back(remind, smtp):
    remind.configure(LADDER)

    code, out, err = remind.cli("owners", "away", "ana@example.com", "--until", "2w", "--by", "ana@example.com")

    assert code == 0, err
    assert out.startswith("ana@example.com is away until ") and "no new leads" in out
    assert listed(remind)["ana@example.com"]["away"] is True and listed(remind)["ben@example.com"]["away"] is False
    for name in ("Jo Smith", "Al Jones"):
        assert remind.cli("leads", "add", "--name", name, "--phone", "1")[0] == 0
    assert (owner_of(remind, 1), owner_of(remind, 2)) == ("ben@example.com", "ben@example.com")

    code, out, err = remind.cli("owners", "back", "ana@example.com")
    assert code == 0 and out.strip() == "ana@example.com is back: in the rotation again", err
    assert remind.cli("leads", "add", "--name", "Kim Lee", "--phone", "1")[0] == 0
    assert owner_of(remind, 3) == "ana@example.com"


def test_an_away_owners_stale_leads_are_reminded_to_the_escalation_role_or_wait(remind, smtp):
    remind.configure(LADDER)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 5 * DAY)
    away(remind, "ana@example.com", NOW - DAY, NOW + 7 * DAY)

    assert remind.sweep(NOW).plan == [f"send to sue@example.com: lead #{lead} (new-untouched, reminder 1, "
                                      "escalation)"]
    assert [m["To"] for m in smtp.messages] == ["sue@example.com"]

    remind.configure(LADDER, reminders='while_away = "wait"\n')
    assert remind.sweep(NOW + DAY).due == 0  # waits for ana
    assert remind.sweep(NOW + 8 * DAY).plan == [  # she is back: the ladder goes on where it was
        f"send to ana@example.com: lead #{lead} (new-untouched, reminder 2)",
        f"send to sue@example.com: lead #{lead} (new-untouched, reminder 2, escalation)"]
    assert owner_of(remind, lead) == "ana@example.com"


@pytest.mark.parametrize("args, words", [
    (("away", "ben@example.com", "--by", "ana@example.com"), "only ben@example.com or an admin says they are away"),
    (("away", "ana@example.com", "--until", "2020-01-01"), "that is not in the future"),
    (("away", "zed@example.com"), "'zed@example.com' is not an active owner"),
    (("back", "ana@example.com"), "ana@example.com is not away"),
    (("away", "ana@example.com", "--until", "someday"), "away until 'someday'"),
])
def test_every_bad_away_is_one_clear_line_and_changes_nothing(remind, smtp, args, words):
    remind.configure(LADDER)

    code, out, err = remind.cli("owners", *args)

    assert (code, out) == (1, "") and err.count("\n") == 1 and words in err, err
    assert not any(row["away"] for row in listed(remind).values())
    assert rows(remind, select(Owner.away_since).where(Owner.away_since.is_not(None))) == []


def test_a_past_away_ends_by_itself_on_its_day(remind, smtp):
    remind.configure(LADDER)
    now = datetime.now(timezone.utc)
    away(remind, "ana@example.com", now - 10 * DAY, now - timedelta(minutes=1))

    assert listed(remind)["ana@example.com"]["away"] is False
    assert remind.cli("leads", "add", "--name", "Jo", "--phone", "1")[0] == 0
    assert owner_of(remind, 1) == "ana@example.com"
