"""The deal pipeline on real servers (SQLite and PostgreSQL, aiosmtpd):
stage moves and their refusals from the command line, the onboarding
hand-off on won, and the staleness policy's warn-then-close in the reminder
sweep — once each, also under two sweeps at once. The clock is injected."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from leadtap.core.store.db import Activity, Lead, Notification, OnboardingRecord, Opportunity, Owner, Task
from leadtap.core.store.engine import utcnow
from tests.test_reminders import DAY, Remind, remind, smtp  # noqa: F401  (fixtures)
from tests.test_config_deals import OPPORTUNITIES
from tests.test_reminder_ladder import rows

DEALS = """
[[owners]]
email = "olga@example.com"
name = "Olga"
roles = ["onboarding"]

[[owners]]
email = "otto@example.com"
name = "Otto"
roles = ["onboarding"]

[pipeline]
admins = ["sue@example.com"]

[[statuses]]
name = "Qualified"
set_on = "stage:Won"

""" + OPPORTUNITIES


def add_deal(remind: Remind, name: str, owner: str | None, stage: str = "Discovery", since: datetime | None = None,
             **fields: str) -> int:
    """A lead and its deal, made ``since`` (default: now) and in ``stage`` since then."""
    since = since or utcnow()
    lead_id = remind.add_lead(name, owner, since=since)
    app = remind.app()
    try:
        with app.db.transaction() as session:
            session.get(Lead, lead_id).last_activity_at = since
            deal = Opportunity(lead_id=lead_id, title=name, stage=stage, created_at=since, stage_changed_at=since,
                               fields=dict(fields))
            session.add(deal)
            session.flush()
            return deal.id
    finally:
        app.close()


def deal_row(remind: Remind, deal_id: int) -> Opportunity:
    return rows(remind, select(Opportunity).where(Opportunity.id == deal_id))[0][0]


def listed(remind: Remind, *args: str) -> list[dict]:
    code, out, err = remind.cli(*args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


# --- moves from the command line -----------------------------------------------


def test_a_stage_move_sets_its_fields_and_is_refused_with_the_rules_words(remind, smtp):
    remind.configure(DEALS)
    deal = add_deal(remind, "Jo Smith", "ana@example.com")

    code, out, err = remind.cli("opportunities", "set", str(deal), "--stage", "Proposal", "--by", "ana@example.com")
    assert code == 1 and "Proposal needs amount" in err and deal_row(remind, deal).stage == "Discovery"

    code, out, err = remind.cli("opportunities", "set", str(deal), "--stage", "Proposal", "--field", "amount=12000",
                                "--by", "ana@example.com")
    assert code == 0, err
    assert out.strip() == f"lead {deal_row(remind, deal).lead_id}: deal amount = 12000; deal Discovery → Proposal"
    assert (deal_row(remind, deal).stage, deal_row(remind, deal).fields) == ("Proposal", {"amount": "12000"})

    code, _, err = remind.cli("opportunities", "set", str(deal), "--stage", "Lost", "--reason", "Other")
    assert code == 1 and "the reason 'Other' needs a note" in err
    code, _, err = remind.cli("opportunities", "set", str(deal), "--stage", "Lost", "--reason", "Price")
    assert code == 0, err
    lost = deal_row(remind, deal)
    assert (lost.stage, lost.lost_reason) == ("Lost", "Price") and lost.closed_at is not None

    code, _, err = remind.cli("opportunities", "set", str(deal), "--stage", "Discovery", "--by", "ana@example.com")
    assert code == 1 and "only an admin can change a closed deal" in err
    code, _, err = remind.cli("opportunities", "set", str(deal), "--stage", "Discovery", "--by", "sue@example.com")
    assert code == 0, err
    reopened = deal_row(remind, deal)
    assert (reopened.stage, reopened.lost_reason, reopened.closed_at) == ("Discovery", None, None)


def test_opportunities_list_filters_and_says_when_each_deal_closes(remind, smtp):
    remind.configure(DEALS)
    now = utcnow()
    fresh = add_deal(remind, "Fresh One", "ana@example.com", since=now - DAY)
    near = add_deal(remind, "Near One", "ben@example.com", since=now - 12 * DAY)

    deals = listed(remind, "opportunities", "list")
    assert [d["id"] for d in deals] == [fresh, near]
    closes = {d["id"]: (datetime.fromisoformat(d["closes_at"]), d["limit"]) for d in deals}
    assert closes[near][1] == "in Discovery for 14d" and abs(closes[near][0] - (now + 2 * DAY)) < timedelta(minutes=1)
    assert [d["id"] for d in listed(remind, "opportunities", "list", "--stale")] == [near]
    assert [d["id"] for d in listed(remind, "opportunities", "list", "--owner", "ana@example.com")] == [fresh]
    assert listed(remind, "opportunities", "list", "--stage", "Won") == []
    code, _, err = remind.cli("opportunities", "list", "--stage", "Signed")
    assert code == 2 and "unknown stage 'Signed'; expected one of Discovery" in err
    code, out, _ = remind.cli("opportunities", "list", "--format", "csv")
    assert out.splitlines()[0].startswith("id,lead_id,title,stage,amount") and len(out.splitlines()) == 3


# --- won: the onboarding hand-off ----------------------------------------------


def win(remind: Remind, deal: int, *by: str) -> tuple[int, str, str]:
    return remind.cli("opportunities", "set", str(deal), "--stage", "Won", "--field", "amount=5000",
                      "--field", "close_date=2026-12-01", *by)


def test_won_hands_each_deal_to_onboarding_in_turn_with_its_tasks_and_an_email(remind, smtp):
    remind.configure(DEALS)
    first = add_deal(remind, "Jo Smith", "ana@example.com")
    second = add_deal(remind, "Al Jones", "ben@example.com")

    code, out, err = win(remind, first, "--by", "ana@example.com")
    assert code == 0, err
    assert "deal Discovery → Won; handed to onboarding; New → Qualified" in out
    assert "notifications: 1 sent" in out  # told at once, after the commit
    assert win(remind, second)[0] == 0

    records = listed(remind, "onboarding", "list")
    assert [(r["opportunity_id"], r["owner"], r["open_tasks"]) for r in records] == [
        (first, "olga@example.com", 2), (second, "otto@example.com", 2)]
    tasks = rows(remind, select(Task.title, Task.due_at, Task.created_at, Task.state, Task.onboarding_id)
                 .where(Task.onboarding_id == records[0]["id"]).order_by(Task.due_at))
    assert [(t.title, t.due_at - t.created_at, t.state) for t in tasks] == [
        ("Kick-off call with Jo Smith", 7 * DAY, "open"), ("Onboarding complete", 30 * DAY, "open")]

    mail = [m for m in smtp.messages if m["To"] == "olga@example.com"]
    assert len(mail) == 1 and mail[0]["Subject"] == "Onboarding: Jo Smith is yours"
    body = mail[0].get_body(("plain",)).get_content()
    assert "1. Kick-off call with Jo Smith, due" in body and "won by Ana" in body


def onboarding_tasks(remind: Remind) -> list[tuple[str, str]]:
    return [(t.title, t.state) for t in rows(remind, select(Task.title, Task.state)
                                             .where(Task.onboarding_id.is_not(None)).order_by(Task.id))]


def test_a_deal_reopened_cancels_its_onboarding_and_won_again_hands_the_same_one_out_anew(remind, smtp):
    remind.configure(DEALS)
    deal = add_deal(remind, "Jo Smith", "ana@example.com")
    assert win(remind, deal)[0] == 0
    assert [s for _, s in onboarding_tasks(remind)] == ["open", "open"]  # the lead went Qualified: they live on

    assert remind.cli("opportunities", "set", str(deal), "--stage", "Negotiation")[0] == 0  # an admin reopens it
    assert rows(remind, select(OnboardingRecord.state)) == [("cancelled",)]
    assert [s for _, s in onboarding_tasks(remind)] == ["cancelled", "cancelled"]

    code, out, err = remind.cli("opportunities", "set", str(deal), "--stage", "Won")
    assert code == 0 and "handed to onboarding" in out, err
    assert rows(remind, select(OnboardingRecord.state, OnboardingRecord.owner_id)) == [
        ("open", rows(remind, select(Owner.id).where(Owner.email == "otto@example.com"))[0][0])]  # the next in turn
    assert [s for _, s in onboarding_tasks(remind)] == ["cancelled", "cancelled", "open", "open"]


def test_an_onboardings_overdue_tasks_are_reminded_though_its_lead_is_closed(remind, smtp):
    remind.configure(DEALS + '\n[[reminders.rules]]\nname = "task-overdue"\nkind = "task"\nafter = "1h"\n')
    assert win(remind, add_deal(remind, "Jo Smith", "ana@example.com"))[0] == 0
    smtp.messages.clear()

    report = remind.sweep(utcnow() + 8 * DAY)  # the kick-off call (7 days) is overdue

    assert report.sent == 1 and smtp.messages[0]["To"] == "olga@example.com"
    assert "Kick-off call with Jo Smith" in smtp.messages[0].get_body(("plain",)).get_content()


def test_an_onboarding_is_done_when_its_last_task_is(remind, smtp):
    remind.configure(DEALS)
    assert win(remind, add_deal(remind, "Jo Smith", "ana@example.com"))[0] == 0
    task_ids = [t.id for t in rows(remind, select(Task.id).where(Task.onboarding_id.is_not(None)).order_by(Task.id))]
    for task_id in task_ids:
        assert listed(remind, "onboarding", "list")[0]["state"] == "open"
        code, _, err = remind.cli("tasks", "done", str(task_id), "--by", "olga@example.com")
        assert code == 0, err
    (record,) = listed(remind, "onboarding", "list", "--state", "done")
    assert record["open_tasks"] == 0 and record["done_at"]


# --- staleness -------------------------------------------------------------------


def test_a_deal_past_its_stage_limit_is_warned_once_then_closed_lost_stale_once(remind, smtp):
    remind.configure(DEALS)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    deal = add_deal(remind, "Jo Smith", "ana@example.com", stage="Proposal", since=start, amount="900")

    assert not remind.sweep(start + 17 * DAY).deals.anything  # Proposal's 21 days: not yet within three
    report = remind.sweep(start + 18 * DAY)
    assert (report.deals.warned, report.deals.closed) == (1, 0)
    assert deal_row(remind, deal).warned_for == start + 21 * DAY
    assert remind.sweep(start + 19 * DAY).deals.warned == 0  # once per deadline
    remind.send_notifications(start + 19 * DAY)
    (warning,) = smtp.messages
    assert warning["To"] == "ana@example.com" and warning["Subject"].startswith(f"Deal #{deal} Jo Smith closes")
    assert "in Proposal for 21d" in warning.get_body(("plain",)).get_content()

    assert remind.sweep(start + 20 * DAY).deals.closed == 0  # the deadline is not here yet
    report = remind.sweep(start + 21 * DAY)
    assert (report.deals.warned, report.deals.closed) == (0, 1)
    closed = deal_row(remind, deal)
    assert (closed.stage, closed.lost_reason) == ("Lost", "Stale")
    assert not remind.sweep(start + 22 * DAY).deals.anything
    remind.send_notifications(start + 21 * DAY)
    assert [m["Subject"] for m in smtp.messages[1:]] == [f"Deal #{deal} Jo Smith was closed as stale"]
    stage_moves = rows(remind, select(Activity.summary, Activity.details).where(Activity.kind == "stage"))
    assert [(s, d["reason"], d["by"]) for s, d in stage_moves] == [("Proposal → Lost", "Stale", "automation")]


def test_activity_keeps_an_idle_deal_open_and_the_warning_itself_is_not_activity(remind, smtp):
    remind.configure(DEALS.replace('max_in_stage = { Discovery = "14d", Proposal = "21d", Negotiation = "30d" }\n',
                                   ""))
    start = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    deal = add_deal(remind, "Jo Smith", "ana@example.com", since=start)
    assert remind.sweep(start + 28 * DAY).deals.warned == 1  # 30 days idle in 2 days
    app = remind.app()
    try:
        with app.db.transaction() as session:
            session.get(Lead, deal_row(remind, deal).lead_id).last_activity_at = start + 29 * DAY  # a reply came
    finally:
        app.close()
    report = remind.send_notifications(start + 29 * DAY)  # the warning, not sent yet, is no longer true
    assert (report.sent, report.dropped) == (0, 1) and smtp.messages == []
    report = remind.sweep(start + 31 * DAY)
    assert report.deals.closed == 0 and deal_row(remind, deal).stage == "Discovery"
    assert remind.sweep(start + 56 * DAY).deals.warned == 1  # idle again: a new deadline, a new warning


def test_two_sweeps_at_once_warn_and_close_each_deal_exactly_once(remind, smtp):
    remind.configure(DEALS)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    deals = [add_deal(remind, f"Person {i}", "ana@example.com", since=start) for i in range(15)]
    apps = [remind.app() for _ in range(2)]
    for app in apps:
        app.ready_database()
    reports = []

    def sweeps(app, barrier):
        for at in (start + 12 * DAY, start + 15 * DAY):
            barrier.wait()
            reports.append(app.reminder_sweep(clock=lambda at=at: at).run().deals)

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=sweeps, args=(app, barrier)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for app in apps:
        app.close()

    assert sum(r.warned for r in reports) == 15 and sum(r.closed for r in reports) == 15
    assert {deal_row(remind, d).stage for d in deals} == {"Lost"}
    kinds = Counter(k for (k,) in rows(remind, select(Activity.kind).where(Activity.kind.in_(["deal_warned", "stage"]))))
    assert kinds == Counter({"deal_warned": 15, "stage": 15})
    owed = Counter(k for (k,) in rows(remind, select(Notification.kind)))
    assert owed == Counter({"deal_stale": 15, "deal_closed_stale": 15})


def test_a_warned_deal_is_not_read_again_until_it_is_due_or_something_happens(remind, smtp):
    from leadtap.core.use_cases.deal_changes import stale_candidates

    remind.configure(DEALS)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    deal = add_deal(remind, "Jo Smith", "ana@example.com", since=start)
    assert remind.sweep(start + 12 * DAY).deals.warned == 1
    app = remind.app()
    try:
        with app.db.transaction() as session:
            rules = app.lead_rules()
            assert stale_candidates(session, rules, start + 13 * DAY) == []  # warned a day ago: nothing to do
            assert stale_candidates(session, rules, start + 15 * DAY) == [deal]  # its three days are up
    finally:
        app.close()


def test_a_new_owner_is_warned_in_turn_and_the_old_owners_warning_is_dropped(remind, smtp):
    remind.configure(DEALS)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    deal = add_deal(remind, "Jo Smith", "ana@example.com", since=start)
    assert remind.sweep(start + 12 * DAY).deals.warned == 1
    lead_id = deal_row(remind, deal).lead_id
    assert remind.cli("leads", "assign", str(lead_id), "ben@example.com")[0] == 0
    assert deal_row(remind, deal).warned_for is None

    assert remind.sweep(start + 12 * DAY + timedelta(hours=1)).deals.warned == 1
    remind.send_notifications(start + 12 * DAY + timedelta(hours=1))
    warnings = [m["To"] for m in smtp.messages if m["Subject"].startswith(f"Deal #{deal}")]
    assert warnings == ["ben@example.com"]
    assert remind.sweep(start + 14 * DAY).deals.closed == 0  # ben has his three days
    assert remind.sweep(start + 15 * DAY + timedelta(hours=1)).deals.closed == 1


# --- one story: a deal won qualifies its lead ----------------------------------------------------------------


QUALIFYING = DEALS.split("[pipeline]")[0] + """
[pipeline]
qualified = "Qualified"

[[reminders.rules]]
name = "new-untouched"
status = "New"
after = "2d"
""" + OPPORTUNITIES


def test_a_deal_won_qualifies_its_lead_and_the_customer_is_not_reminded(remind, smtp):
    """With `[pipeline] qualified` and no status set on the won stage, a deal won moves its lead
    there by automation: a closed lead, which no reminder touches (the open one beside it is)."""
    remind.configure(QUALIFYING)
    won = add_deal(remind, "Jo Smith", "ana@example.com", since=utcnow() - 5 * DAY)
    open_deal = add_deal(remind, "Al Jones", "ana@example.com", since=utcnow() - 5 * DAY)
    code, out, err = win(remind, won, "--by", "ana@example.com")
    assert code == 0, err
    assert "New → Qualified" in out
    lead = rows(remind, select(Lead.status, Lead.owner_id).join(Opportunity, Opportunity.lead_id == Lead.id)
                .where(Opportunity.id == won))[0]
    assert lead.status == "Qualified"
    moved_by = rows(remind, select(Activity.details).join(Opportunity, Opportunity.lead_id == Activity.lead_id)
                    .where(Opportunity.id == won, Activity.summary.contains("Qualified")))
    assert [a.details["how"] for a in moved_by] == ["rule"]  # by automation, not by the person who won it
    report = remind.sweep(utcnow() + DAY)
    assert report.sent >= 1
    reminded = [m["Subject"] for m in smtp.messages if not m["Subject"].startswith("Onboarding:")]
    assert reminded == ['Lead #2 Al Jones has been "New" for 6 days']  # the open lead only
    assert deal_row(remind, open_deal).stage == "Discovery"


DISQUALIFYING = DEALS.split("[pipeline]")[0] + """
[pipeline]
disqualified = "Disqualified"
disqualify_reasons = ["No budget", "Went with a competitor", "Other"]
other_reason = "Other"
""" + OPPORTUNITIES


def test_a_lead_disqualified_closes_its_open_deal_lost_with_its_reason(remind, smtp):
    """The same reason when the deal has it too; else the deal's "other" reason, the lead's in the note.
    The closed deal is then never warned or closed as stale."""
    remind.configure(DISQUALIFYING)
    lost_to_rival = add_deal(remind, "Jo Smith", "ana@example.com", since=utcnow() - 40 * DAY)
    no_budget = add_deal(remind, "Al Jones", "ana@example.com", since=utcnow() - 40 * DAY)
    won = add_deal(remind, "Cy Young", "ana@example.com")
    for deal, reason in ((lost_to_rival, "went with a competitor"), (no_budget, "No budget")):
        lead = deal_row(remind, deal).lead_id
        code, out, err = remind.cli("leads", "set", str(lead), "--status", "Disqualified", "--reason", reason)
        assert code == 0, err
    assert (deal_row(remind, lost_to_rival).stage, deal_row(remind, no_budget).stage) == ("Lost", "Lost")
    stages = rows(remind, select(Activity.lead_id, Activity.details).where(Activity.kind == "stage")
                  .order_by(Activity.id))
    closing = {row.lead_id: row.details for row in stages}
    assert closing[deal_row(remind, lost_to_rival).lead_id]["reason"] == "Went with a competitor"
    other = closing[deal_row(remind, no_budget).lead_id]
    assert (other["reason"], other["note"]) == ("Other", "the lead was disqualified: No budget")
    assert win(remind, won)[0] == 0
    lead = deal_row(remind, won).lead_id
    assert remind.cli("leads", "set", str(lead), "--status", "Disqualified", "--reason", "No budget",
                      "--by", "sue@example.com")[0] == 0
    assert deal_row(remind, won).stage == "Won"  # a closed deal is not reopened to be lost
    report = remind.sweep(utcnow() + DAY)
    assert (report.deals.warned, report.deals.closed) == (0, 0)


def test_a_disqualified_leads_deal_closes_past_the_lost_stages_rules_with_the_persons_note(remind, smtp):
    """Automation closes the deal as the staleness policy does: a field the Lost stage requires of a person,
    or a lost reason list without an "other" reason, never leaves it open (to be closed as stale later)."""
    strict = OPPORTUNITIES.replace('required = { Proposal = ["amount"]', 'required = { Lost = ["lost_to"], '
                                                                         'Proposal = ["amount"]')
    remind.configure(DISQUALIFYING.replace(OPPORTUNITIES, strict.replace('other_reason = "Other"\n', '')))
    deal = add_deal(remind, "Jo Smith", "ana@example.com", since=utcnow() - 40 * DAY)
    lead = deal_row(remind, deal).lead_id
    code, out, err = remind.cli("leads", "set", str(lead), "--status", "Disqualified", "--reason", "No budget",
                                "--note", "moved abroad")
    assert code == 0, err
    assert deal_row(remind, deal).stage == "Lost"
    (closing,) = [r.details for r in rows(remind, select(Activity.details).where(Activity.kind == "stage"))]
    assert closing["note"] == "the lead was disqualified: No budget (moved abroad)" and not closing.get("reason")
    report = remind.sweep(utcnow() + DAY)
    assert (report.deals.warned, report.deals.closed) == (0, 0)


LOSING = DISQUALIFYING + """
[[statuses]]
name = "Disqualified"
set_on = "stage:Lost"
"""


def test_a_deal_lost_closes_its_lead_when_the_disqualified_status_is_set_on_it(remind, smtp):
    """By a person, with the deal's reason (the same, or the lead's "other" with a note), and by the
    staleness policy; the closed lead is then never reminded."""
    remind.configure(LOSING + """
[[reminders.rules]]
name = "new-untouched"
status = "New"
after = "2d"
""")
    rival = add_deal(remind, "Jo Smith", "ana@example.com", since=utcnow() - 5 * DAY)
    price = add_deal(remind, "Al Jones", "ana@example.com", since=utcnow() - 5 * DAY)
    code, _, err = remind.cli("opportunities", "set", str(rival), "--stage", "Lost",
                              "--reason", "Went with a competitor", "--by", "ana@example.com")
    assert code == 0, err
    code, out, err = remind.cli("opportunities", "set", str(price), "--stage", "Lost", "--reason", "Other",
                                "--note", "too dear")
    assert code == 0, err
    assert "New → Disqualified" in out
    closed = {deal: rows(remind, select(Lead.status, Activity.details).join(Activity, Activity.lead_id == Lead.id)
                         .where(Lead.id == deal_row(remind, deal).lead_id, Activity.kind == "status"))
              for deal in (rival, price)}
    (status, details), = closed[rival]
    assert (status, details["reason"], details["by"]) == ("Disqualified", "Went with a competitor", "automation")
    (status, details), = closed[price]
    assert (details["reason"], details["note"]) == ("Other", "the deal was lost: Other (too dear)")
    assert remind.sweep(utcnow() + DAY).due == 0  # both leads closed: no stale "New" reminder
