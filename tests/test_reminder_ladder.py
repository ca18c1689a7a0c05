"""Reminders grow with the lifecycle: overdue tasks (``kind = "task"``) and
the SLA ladder remind → escalate → reassign (``reassign_after``), on a real
SMTP server, on SQLite and PostgreSQL, with the clock injected."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from leadtap.core.use_cases import changes
from leadtap.core.store.db import Activity, Lead, Notification, Owner, Reminder, Rotation, Task
from leadtap.core.rules.lifecycle import OwnerChanged
from tests.test_reminders import DAY, NOW, Remind, remind, smtp  # noqa: F401  (the fixtures)

TASK_RULE = """
[[reminders.rules]]
name = "task-overdue"
kind = "task"
after = "1h"
"""

LADDER = """
[[reminders.rules]]
name = "new-untouched"
status = "New"
after = "2d"
repeat_every = "1d"
escalate_after = 2
escalate_to_role = "sales-lead"
reassign_after = 3
"""

NOTIFY = '\n[notifications]\nnew_lead = "new_lead"\n'


def add_task(remind: Remind, lead_id: int, title: str, due_at: datetime, state: str = "open") -> int:
    app = remind.app()
    try:
        with app.db.transaction() as session:
            owner_id = session.scalar(select(Lead.owner_id).where(Lead.id == lead_id))
            task = Task(lead_id=lead_id, owner_id=owner_id, title=title, due_at=due_at, state=state,
                        created_at=due_at - DAY)
            session.add(task)
            session.flush()
            return task.id
    finally:
        app.close()


def owner_of(remind: Remind, lead_id: int) -> str | None:
    app = remind.app()
    try:
        with app.db.transaction() as session:
            return session.scalar(select(Owner.email).join(Lead, Lead.owner_id == Owner.id).where(Lead.id == lead_id))
    finally:
        app.close()


def rows(remind: Remind, statement) -> list:
    app = remind.app()
    try:
        with app.db.transaction() as session:
            return list(session.execute(statement).all())
    finally:
        app.close()


# --- overdue tasks ------------------------------------------------------------------


def test_an_overdue_task_reminds_its_owner_once_per_task(remind, smtp):
    remind.configure(TASK_RULE)
    lead = remind.add_lead("Jo Smith", "ana@example.com")
    call = add_task(remind, lead, "Call Jo", NOW - 2 * 3600 * timedelta(seconds=1))
    add_task(remind, lead, "Send the brochure", NOW - 3 * 3600 * timedelta(seconds=1))
    add_task(remind, lead, "Not yet due", NOW + DAY)
    add_task(remind, lead, "Done already", NOW - DAY, state="done")

    report = remind.sweep(NOW)

    assert (report.due, report.sent) == (2, 2)
    subjects = sorted(m["Subject"] for m in smtp.messages)
    assert subjects == [f"Task overdue for lead #{lead}: Call Jo", f"Task overdue for lead #{lead}: Send the brochure"]
    body = smtp.handler.to("ana@example.com")[0].get_body(("plain",)).get_content()
    assert "leadtap tasks done" in body
    assert remind.sweep(NOW + DAY).sent == 0  # once per task
    assert {row.task_id for row in rows(remind, select(Reminder.task_id))} >= {call}


def test_no_task_reminder_for_a_closed_or_snoozed_lead(remind, smtp):
    remind.configure(TASK_RULE)
    closed = remind.add_lead("Closed Lead", "ana@example.com", status="Disqualified")
    snoozed = remind.add_lead("Snoozed Lead", "ben@example.com")
    add_task(remind, closed, "Call", NOW - DAY)
    add_task(remind, snoozed, "Call", NOW - DAY)
    remind.snooze(snoozed, NOW + DAY)

    assert remind.sweep(NOW).due == 0
    assert remind.sweep(NOW + 2 * DAY).sent == 1  # the snooze ended; the closed lead stays quiet


def test_a_task_rule_repeats_and_escalates_like_a_status_rule(remind, smtp):
    remind.configure(TASK_RULE + 'repeat_every = "1d"\nescalate_after = 2\nescalate_to_role = "sales-lead"\n')
    lead = remind.add_lead("Jo Smith", "ana@example.com")
    add_task(remind, lead, "Call Jo", NOW - DAY)

    remind.sweep(NOW)
    remind.sweep(NOW + DAY)

    assert [m["To"] for m in smtp.messages] == ["ana@example.com", "ana@example.com", "sue@example.com"]
    assert smtp.messages[-1]["Subject"].startswith("[Escalation] Task overdue")


def test_a_digest_lists_tasks_and_stale_leads_together(remind, smtp):
    remind.configure(TASK_RULE + LADDER.replace("reassign_after = 3\n", ""), reminders="digest = true\n")
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 2 * DAY)
    add_task(remind, lead, "Call Jo", NOW - DAY)

    remind.sweep(NOW)

    (digest,) = smtp.messages
    text = digest.get_body(("plain",)).get_content()
    assert "2 reminders for you" in text and 'task "Call Jo" 1 day overdue' in text and '"New" for 2 days' in text


# --- the ladder: remind → escalate → reassign ----------------------------------------


def test_the_nth_reminder_gives_the_lead_to_the_next_owner_and_the_count_starts_again(remind, smtp):
    remind.configure(LADDER + NOTIFY)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 2 * DAY)

    remind.sweep(NOW)  # 1: ana
    remind.sweep(NOW + DAY)  # 2: ana and sue (escalation)
    assert owner_of(remind, lead) == "ana@example.com"
    report = remind.sweep(NOW + 2 * DAY)  # 3: reassigned

    assert report.reassigned == 1 and "1 reassigned" in report.summary()
    assert owner_of(remind, lead) == "ben@example.com"
    escalation = smtp.handler.to("sue@example.com")[-1].get_body(("plain",)).get_content()
    assert "it now goes to Ben (ben@example.com)" in escalation
    assert len(smtp.handler.to("ana@example.com")) == 2  # the third reminder is the outbox's notice, below
    assert sorted(rows(remind, select(Notification.recipient, Notification.kind, Notification.state))) == [
        ("ana@example.com", "reassigned", "pending"), ("ben@example.com", "new_lead", "pending")]
    (activity,) = rows(remind, select(Activity.summary, Activity.details).where(Activity.kind == "owner"))
    assert activity.summary == "ana@example.com → ben@example.com" and activity.details["by"] == "automation"
    remind.send_notifications(NOW + 2 * DAY)
    notice = smtp.handler.to("ana@example.com")[-1]
    assert notice["Subject"] == f"Lead #{lead} Jo Smith has gone to Ben" and notice["X-Leadtap"] == "notification"
    sent = len(smtp.messages)
    assert remind.sweep(NOW + 3 * DAY).due == 0  # a new stay for ben: nothing before `after`
    remind.sweep(NOW + 4 * DAY + timedelta(minutes=1))
    assert [m["To"] for m in smtp.messages[sent:]] == ["ben@example.com"]


def test_remind_sends_the_new_owners_email_at_once(remind, smtp):
    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1") + NOTIFY)
    remind.add_lead("Jo Smith", "ana@example.com", since=datetime.now(NOW.tzinfo) - 3 * DAY)

    code, out, _ = remind.cli("remind")

    assert code == 0 and "1 reassigned" in out and "notifications: 2 sent" in out
    assert [m["Subject"] for m in smtp.handler.to("ben@example.com")][0].startswith("New lead #1")
    assert [m["Subject"] for m in smtp.handler.to("ana@example.com")] == ["Lead #1 Jo Smith has gone to Ben"]


def test_the_rung_re_checks_the_lead_under_its_lock(remind, smtp):
    """Between a sweep's read and its reassignment the lead may move on, or get
    a new owner: then it is left where it is."""
    remind.configure(LADDER)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 3 * DAY)
    app = remind.app()
    try:
        rules = app.lead_rules()
        with app.ready_database().transaction() as session:
            stale = changes.reassign_stale(session, rules, lead, "New", NOW - 4 * DAY, NOW)  # another stay
            moved = changes.reassign_stale(session, rules, lead, "Attempting", NOW - 3 * DAY, NOW)
            given = changes.reassign_stale(session, rules, lead, "New", NOW - 3 * DAY, NOW)
    finally:
        app.close()

    assert (stale, moved) == (None, None)
    assert [e.new for e in given.of(OwnerChanged)] == ["ben@example.com"]


def test_with_no_other_owner_in_the_rotation_the_reminders_go_on(remind, smtp):
    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1")
                     + '\n[assignment]\nrole = "sales-lead"\n')
    lead = remind.add_lead("Jo Smith", "sue@example.com")

    report = remind.sweep(NOW)

    assert (report.reassigned, report.sent) == (0, 1)
    assert owner_of(remind, lead) == "sue@example.com"
    assert ("(reassign)", "no other active owner holds the role 'sales-lead'") in [
        (r.recipient, r.last_error) for r in rows(remind, select(Reminder.recipient, Reminder.last_error))]


def test_two_sweeps_at_once_reassign_each_lead_exactly_once(remind, smtp):
    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1"))
    leads = [remind.add_lead(f"Person {i}", "ana@example.com") for i in range(20)]
    apps = [remind.app() for _ in range(2)]
    for app in apps:
        app.ready_database()
    start = threading.Barrier(2)
    reports = []

    def sweep(app):
        start.wait()
        reports.append(app.reminder_sweep(clock=lambda: NOW).run())

    threads = [threading.Thread(target=sweep, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for app in apps:
        app.close()

    assert sum(r.reassigned for r in reports) == 20
    moves = Counter(row.lead_id for row in rows(remind, select(Activity.lead_id).where(Activity.kind == "owner")))
    assert moves == Counter({lead: 1 for lead in leads})
    assert Counter(owner_of(remind, lead) for lead in leads) == Counter({"ben@example.com": 20})
    (turns,) = rows(remind, select(Rotation.turns).where(Rotation.role == "sales"))
    assert turns == (20,)
    assert Counter(m["To"] for m in smtp.messages) == Counter({"sue@example.com": 20})  # ana: the outbox's notices
    notices = rows(remind, select(Notification.lead_id).where(Notification.kind == "reassigned"))
    assert sorted(row.lead_id for row in notices) == leads


def test_the_old_owners_notice_survives_a_refusal_that_may_pass(remind, smtp):
    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1"))
    lead = remind.add_lead("Jo Smith", "ana@example.com")
    smtp.handler.refuse["ana@example.com"] = "451 4.3.0 try later"
    assert remind.sweep(NOW).reassigned == 1
    assert remind.send_notifications(NOW).retry == 1

    del smtp.handler.refuse["ana@example.com"]
    assert remind.sweep(NOW + timedelta(minutes=10)).due == 0  # the stay is ben's now
    assert remind.send_notifications(NOW + timedelta(minutes=10)).sent == 1

    assert [m["Subject"] for m in smtp.handler.to("ana@example.com")] == [f"Lead #{lead} Jo Smith has gone to Ben"]


def test_a_database_failure_on_one_reassignment_never_stops_the_sweep(remind, smtp, monkeypatch):
    from sqlalchemy.exc import OperationalError

    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1"))
    first = remind.add_lead("Jo Smith", "ana@example.com")
    second = remind.add_lead("Kim Lee", "ana@example.com")
    original = changes.reassign_stale

    def deadlocked_on_the_first(session, rules, lead_id, *args):
        if lead_id == first:
            raise OperationalError("UPDATE leads", {}, Exception("deadlock detected"))
        return original(session, rules, lead_id, *args)

    monkeypatch.setattr(changes, "reassign_stale", deadlocked_on_the_first)
    report = remind.sweep(NOW)

    assert report.reassigned == 1 and report.sent == 3  # ana for the first; sue for both
    assert (owner_of(remind, first), owner_of(remind, second)) == ("ana@example.com", "ben@example.com")
