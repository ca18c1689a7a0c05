"""Reminders grow with the lifecycle: overdue tasks (``kind = "task"``) and
the SLA ladder remind → escalate → reassign (``reassign_after``), on a real
SMTP server, on SQLite and PostgreSQL, with the clock injected."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from leadtap.core.use_cases import changes
from leadtap.core.store.db import Activity, Lead, Notification, Owner, Reminder, Rotation, Task
from leadtap.core.rules.lifecycle import OwnerChanged
from tests.test_reminders import DAY, NOW, RULE, Remind, remind, smtp  # noqa: F401  (the fixtures)

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
    assert ("(reassign)", "no other active owner holds the role 'sales-lead' (or all are away)") in [
        (r.recipient, r.last_error) for r in rows(remind, select(Reminder.recipient, Reminder.last_error))]


def test_two_sweeps_at_once_reassign_each_lead_exactly_once(remind, smtp):
    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1").replace("escalate_after = 2",
                                                                                         "escalate_after = 1"))
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

    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1").replace("escalate_after = 2",
                                                                                         "escalate_after = 1"))
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


# --- the ladder counts what was sent ---------------------------------------------------


def sent_to(smtp, start: int = 0) -> list[str]:
    return [m["To"] for m in smtp.messages[start:]]


def test_a_ladder_enabled_over_old_leads_reminds_before_it_escalates_and_reassigns(remind, smtp):
    remind.configure(LADDER)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 5 * DAY)  # "stale" for days already

    first = remind.sweep(NOW)
    assert (first.sent, first.reassigned) == (1, 0) and sent_to(smtp) == ["ana@example.com"]
    assert first.plan == [f"send to ana@example.com: lead #{lead} (new-untouched, reminder 1)"]
    assert remind.sweep(NOW + 12 * timedelta(hours=1)).due == 0  # the next rung is a day after this one
    second = remind.sweep(NOW + DAY)
    assert sent_to(smtp, 1) == ["ana@example.com", "sue@example.com"] and second.reassigned == 0
    assert owner_of(remind, lead) == "ana@example.com"
    third = remind.sweep(NOW + 2 * DAY)
    assert third.reassigned == 1 and owner_of(remind, lead) == "ben@example.com"


def test_a_mailbox_that_stays_full_is_tried_each_sweep_and_the_ladder_still_climbs(remind, smtp):
    """Its server refuses the owner's reminder for now, day after day: the
    reminder is kept (failed) and tried again; the next one comes a day after
    the first attempt, so the escalation and the reassignment still come."""
    remind.configure(LADDER)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 5 * DAY)
    smtp.handler.refuse["ana@example.com"] = "452 4.2.2 mailbox full"

    assert remind.sweep(NOW).released == 1
    assert remind.sweep(NOW + timedelta(hours=2)).plan == [
        f"send to ana@example.com: lead #{lead} (new-untouched, reminder 1)"]  # tried again
    (failed,) = rows(remind, select(Reminder.state, Reminder.first_failed_at, Reminder.last_error))
    assert failed.state == "failed" and failed.first_failed_at == NOW and "452 4.2.2" in failed.last_error
    assert remind.sweep(NOW + DAY).plan == [
        f"send to ana@example.com: lead #{lead} (new-untouched, reminder 2)",
        f"send to sue@example.com: lead #{lead} (new-untouched, reminder 2, escalation)"]
    assert smtp.handler.to("sue@example.com")
    assert remind.sweep(NOW + 2 * DAY).reassigned == 1 and owner_of(remind, lead) == "ben@example.com"


def test_while_our_own_server_is_down_the_ladder_holds(remind, smtp):
    """No connection to the SMTP server: nobody heard anything, so nothing
    counts — the first reminder is still the one due when it is back."""
    from tests.smtp import SilentServer

    remind.configure(LADDER)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 5 * DAY)
    with SilentServer() as down:
        remind.configure(LADDER, smtp=f'host = "127.0.0.1"\nport = {down.port}\nsecurity = "plain"\ntimeout = "1s"\n')
        assert remind.sweep(NOW).released == 1
        assert remind.sweep(NOW + 3 * DAY).released == 1
    assert rows(remind, select(Reminder.id)) == []
    remind.configure(LADDER)
    assert remind.sweep(NOW + 3 * DAY + timedelta(minutes=15)).plan == [
        f"send to ana@example.com: lead #{lead} (new-untouched, reminder 1)"]


def test_a_refused_reassignment_never_silences_the_owners_reminder(remind, smtp):
    """No one else to take the lead, and the owner's copy fails for now: the
    next sweep still reminds the owner (it found the rung's reassignment
    claimed, but refused)."""
    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1")
                     + '\n[assignment]\nrole = "sales-lead"\n')
    remind.add_lead("Jo Smith", "sue@example.com")
    smtp.handler.refuse["sue@example.com"] = "451 4.3.0 try later"
    assert remind.sweep(NOW).released == 1
    del smtp.handler.refuse["sue@example.com"]

    assert remind.sweep(NOW + timedelta(minutes=15)).sent == 1


def test_the_next_rung_counts_from_when_the_last_first_went_out(remind, smtp):
    """The owner has reminder 2 at once; the escalation copy goes out late:
    reminder 3 still comes a day after the owner's."""
    remind.configure(LADDER)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 5 * DAY)
    remind.sweep(NOW)
    smtp.handler.refuse["sue@example.com"] = "451 4.3.0 try later"
    remind.sweep(NOW + DAY)
    del smtp.handler.refuse["sue@example.com"]
    assert remind.sweep(NOW + DAY + timedelta(hours=20)).sent == 1  # sue's copy, late

    assert remind.sweep(NOW + 2 * DAY).reassigned == 1 and owner_of(remind, lead) == "ben@example.com"


def test_an_ownerless_task_reminder_records_nothing_and_starts_at_one_for_its_owner(remind, smtp):
    remind.configure(TASK_RULE + 'repeat_every = "1h"\n')
    lead = remind.add_lead("Jo Smith", None)
    add_task(remind, lead, "Call Jo", NOW - DAY)

    for hour in range(6):
        remind.sweep(NOW + hour * timedelta(hours=1))

    assert rows(remind, select(Reminder.id)) == []


def test_a_rung_nobody_can_be_sent_is_recorded_and_the_ladder_still_reassigns(remind, smtp):
    remind.configure(LADDER.replace('escalate_after = 2\nescalate_to_role = "sales-lead"\n', "")
                     .replace("reassign_after = 3", "reassign_after = 2"))
    lead = remind.add_lead("Jo Smith", None, since=NOW - 5 * DAY)

    assert remind.sweep(NOW).due == 0 and remind.sweep(NOW + timedelta(hours=1)).due == 0
    nobody = rows(remind, select(Reminder.recipient, Reminder.repeat, Reminder.last_error))
    assert nobody == [("(nobody)", 0, "no active owner and no one in the escalation role to remind")]
    assert remind.sweep(NOW + DAY).reassigned == 1
    assert owner_of(remind, lead) in ("ana@example.com", "ben@example.com")


def test_a_dry_run_says_exactly_what_the_sweep_then_does_and_changes_nothing(remind, smtp):
    from tests.test_deal_pipeline import DEALS, add_deal, deal_row

    remind.configure(LADDER + DEALS)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    at = start + 22 * DAY
    warned = add_deal(remind, "Lou Reed", "ana@example.com", stage="Proposal", since=start + 4 * DAY)
    closing = add_deal(remind, "Max Roe", "ben@example.com", stage="Proposal", since=start + DAY)
    remind.set_status(deal_row(remind, warned).lead_id, "Attempting", at)  # their leads are not stale
    remind.set_status(deal_row(remind, closing).lead_id, "Attempting", at)
    assert remind.sweep(start + 19 * DAY).deals.warned == 1  # the closing one: it closes at its limit
    climbing = remind.add_lead("Jo Smith", "ana@example.com", since=at - 10 * DAY)
    remind.sweep(at - 2 * DAY)
    remind.sweep(at - DAY)
    fresh = remind.add_lead("Kim Lee", "ben@example.com", since=at - 3 * DAY)
    mail_before, reminders_before = len(smtp.messages), rows(remind, select(Reminder.id))

    rehearsal = remind.sweep(at, dry_run=True)

    assert len(smtp.messages) == mail_before and rows(remind, select(Reminder.id)) == reminders_before
    assert owner_of(remind, climbing) == "ana@example.com" and deal_row(remind, closing).stage == "Proposal"
    assert deal_row(remind, warned).warned_for is None
    warned_lead, closing_lead = deal_row(remind, warned).lead_id, deal_row(remind, closing).lead_id
    assert rehearsal.plan == [
        f"warn the owner of deal #{warned} (lead #{warned_lead}): it closes as stale at "
        f"{(start + 25 * DAY).isoformat()} (in Proposal for 21d)",
        f"close deal #{closing} (lead #{closing_lead}) lost as stale (in Proposal for 21d)",
        f"reassign lead #{climbing} (new-untouched, reminder 3) from ana@example.com to ben@example.com",
        f"send to sue@example.com: lead #{climbing} (new-untouched, reminder 3, escalation)",
        f"send to ben@example.com: lead #{fresh} (new-untouched, reminder 1)",
    ]

    done = remind.sweep(at)

    assert done.plan == rehearsal.plan and (done.due, done.reassigned) == (rehearsal.due, rehearsal.reassigned)
    assert (done.deals.warned, done.deals.closed) == (rehearsal.deals.warned, rehearsal.deals.closed) == (1, 1)
    assert sent_to(smtp, mail_before) == ["sue@example.com", "ben@example.com"]
    assert owner_of(remind, climbing) == "ben@example.com" and deal_row(remind, closing).stage == "Lost"


def test_a_dry_run_outside_business_hours_says_what_waits_and_until_when(remind, smtp):
    remind.configure(RULE, reminders='business_hours = "Mon-Fri 08:00-18:00"\n')
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 5 * DAY)
    saturday = NOW + 5 * DAY

    assert remind.sweep(saturday).skipped and smtp.messages == []
    rehearsal = remind.sweep(saturday, dry_run=True)

    assert rehearsal.waits_until.isoformat() == "2026-11-30T08:00:00+02:00"  # Monday morning in Vilnius
    assert rehearsal.plan == [f"send to ana@example.com: lead #{lead} (new-untouched, reminder 1)"]
    assert smtp.messages == []


def test_remind_dry_run_prints_the_reassignment_and_sends_nothing(remind, smtp):
    remind.configure(LADDER.replace("reassign_after = 3", "reassign_after = 1") + NOTIFY)
    lead = remind.add_lead("Jo Smith", "ana@example.com", since=datetime.now(NOW.tzinfo) - 3 * DAY)

    code, out, _ = remind.cli("remind", "--dry-run")

    assert code == 0 and smtp.messages == [] and owner_of(remind, lead) == "ana@example.com"
    assert out.splitlines() == [
        f"would reassign lead #{lead} (new-untouched, reminder 1) from ana@example.com to ben@example.com",
        "reminders: 0 due, 1 reassigned (dry run, nothing sent)"]
    assert rows(remind, select(Notification.id)) == []
