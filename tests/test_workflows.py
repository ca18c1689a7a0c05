"""Stage workflows: a status's steps (a task, an email to the owner, a role,
an address or the contact, an assignment, fields set), each owed when a
lead enters the status and run at its ``after`` through the outbox — only
if the lead is still in that stay.

Pure rules first (no server, no clock); then the steps run against Dovecot,
aiosmtpd and SQLite/PostgreSQL, the clock injected; then two workers on
PostgreSQL that never acknowledge one contact twice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from leadtap.bootstrap import build_app
from leadtap.core.errors import ConfigError
from leadtap.core.rules import lifecycle
from leadtap.core.rules.lifecycle import AUTOMATED, CLI, Actor, LeadState, Pipeline, StatusOptions
from leadtap.core.rules.workflows import Step, Stay, contact_refused, moved_on, reply_subject
from leadtap.core.store.db import ContactEmail, Lead, Task, WorkflowStep
from leadtap.core.store.engine import Database, upgrade_schema
from leadtap.core.use_cases.workflows import reserve_contact
from tests.helpers import OWNERS, ROOT, enquiry, plain_message, run_leadtap, write_config
from tests.test_config import config, load, refused
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)
from tests.test_notifications import smtp  # noqa: F401  (the fixture)
from tests.test_workers import run_at_once

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
SMTP = '[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "plain"\ntimeout = "5s"\nfrom = "Sales <crm@example.com>"\n'
ACKNOWLEDGE = """
[[statuses]]
name = "New"
steps = [
  { email = "contact", template = "acknowledgement", reply_to = "owner" },
  { task = "Call {{ lead.name }}", due = "4h", after = "1d" },
  { email = "owner", template = "status_nudge", after = "2d" },
  { set = { priority = "high" }, after = "2d" },
  { assign = "seniors", after = "3d" },
]
"""
SENIOR = '\n[[owners]]\nemail = "sam@example.com"\nname = "Sam"\nroles = ["seniors"]\n'


# --- the rules ----------------------------------------------------------------


def steps_of(tmp_path, text: str, with_smtp: bool = True) -> tuple[Step, ...]:
    loaded = load(tmp_path, config(extra=text + SENIOR + (SMTP.format(port=2525) if with_smtp else "")))
    return loaded.pipeline.option("New").steps


def test_each_kind_of_step_reads_from_the_config(tmp_path):
    steps = steps_of(tmp_path, ACKNOWLEDGE)

    assert [s.kind for s in steps] == ["email", "task", "email", "set", "assign"]
    ack, task, nudge, setter, assign = steps
    assert ack.to_contact and ack.template == "acknowledgement" and ack.reply_to == "owner"
    assert ack.once_per == timedelta(days=30) and ack.after == timedelta(0) and ack.sender == "smtp"
    assert task.title == "Call {{ lead.name }}" and task.due == timedelta(hours=4) and task.after == timedelta(days=1)
    assert nudge.to == "owner" and not nudge.to_contact
    assert setter.values == {"priority": "high"} and assign.role == "seniors"
    assert assign.describe() == "assign to the seniors rotation after 3d"


@pytest.mark.parametrize("step, key, words", [
    ('{ task = "Call", email = "owner", template = "x" }', "steps[0]", "one of task, email, assign, set (task and email"),
    ('{ after = "1d" }', "steps[0]", "(none given)"),
    ('{ task = "Call" }', "steps[0].due", "required"),
    ('{ email = "role:nobody", template = "x" }', "steps[0].email", "no owner holds the role 'nobody'"),
    ('{ email = "not an address", template = "x" }', "steps[0].email", "expected owner, contact, role:NAME"),
    ('{ email = "owner", template = "../etc/passwd" }', "steps[0].template", "a template name"),
    ('{ email = "owner", template = "x", once_per = "1d" }', "steps[0].once_per", "only an email to the contact"),
    ('{ email = "contact", template = "x", from = "boss" }', "steps[0].from", "expected one of ['smtp', 'owner']"),
    ('{ email = "contact", template = "x", once_per = "0s" }', "steps[0].once_per", "a positive duration"),
    ('{ assign = "marketing" }', "steps[0].assign", "no owner holds the role 'marketing'"),
    ('{ set = { source = "Web" } }', "steps[0].set", "source is not a field a workflow sets"),
    ('{ set = { Email = "x@y.test" } }', "steps[0].set", "Email is not a field a workflow sets"),
    ('{ set = { seats = 3 } }', "steps[0].set", "text, not empty"),
    ('{ set = { seats = "" } }', "steps[0].set", "text, not empty"),
    ('{ email = "owner", template = "' + "t" * 101 + '" }', "steps[0].template", "at most 100"),
    ('{ task = "Call", due = "1d", when = "later" }', "steps[0]", "when"),
])
def test_a_bad_step_is_refused_naming_its_key(tmp_path, step, key, words):
    error = refused(tmp_path, config(extra=f'[[statuses]]\nname = "New"\nsteps = [ {step} ]\n' + SENIOR
                                     + SMTP.format(port=2525)))

    assert f"statuses[0].{key}" in str(error) and words in str(error)


def test_steps_not_in_a_list_and_set_values_of_a_declared_field_are_refused(tmp_path):
    error = refused(tmp_path, config(extra='[[statuses]]\nname = "New"\nsteps = "call them"\n'))
    assert "statuses[0].steps: a list is expected" in str(error)

    fields = '[[leads.fields]]\nname = "priority"\ntype = "choice"\nchoices = ["high", "low"]\n'
    error = refused(tmp_path, config(extra=fields + '[[statuses]]\nname = "New"\nsteps = [{ set = { priority = "urgent" } }]\n'))
    assert "statuses[0].steps[0].set: 'urgent' is not a choice of priority" in str(error)


def test_a_closed_status_takes_no_task_or_assign_step(tmp_path):
    error = refused(tmp_path, config(extra='[[statuses]]\nname = "Qualified"\nsteps = [{ task = "x", due = "1d" }]\n'))

    assert "statuses[0].steps: 'Qualified' is closed: a closed lead takes no tasks" in str(error)


def test_a_workflow_that_sends_email_needs_an_smtp_table(tmp_path):
    with pytest.raises(ConfigError, match=r"statuses\.New sends email, so an \[smtp\] table is required"):
        steps_of(tmp_path, '[[statuses]]\nname = "New"\nsteps = [{ email = "owner", template = "status_nudge" }]\n',
                 with_smtp=False)
    assert steps_of(tmp_path, '[[statuses]]\nname = "New"\nsteps = [{ task = "Call", due = "1d" }]\n', with_smtp=False)


PIPELINE = Pipeline(statuses=("New", "Attempting", "Won", "Lost"), closed=("Won", "Lost"), default_status="New",
                    options={"Attempting": StatusOptions("Attempting", steps=(Step("task", title="Call", due=timedelta(1)),))})


def test_entering_a_status_with_steps_owes_them_and_other_statuses_do_not():
    lead = LeadState(1, "New")

    moved = lifecycle.move(lead, "Attempting", PIPELINE, Actor(CLI, "cli", admin=True), NOW)
    assert moved.of(lifecycle.StepsOwed) == [lifecycle.StepsOwed("Attempting")]
    assert not lifecycle.move(lead, "Lost", PIPELINE, AUTOMATED, NOW).of(lifecycle.StepsOwed)
    created = lifecycle.create(LeadState(0, "Attempting", fields={"name": "Jo"}), "Email", ("Email",), PIPELINE,
                               Actor(CLI, "cli", admin=True), NOW, "hand")
    assert created.of(lifecycle.StepsOwed) == [lifecycle.StepsOwed("Attempting")]


def test_a_step_runs_only_in_the_stay_it_was_owed_for():
    at = NOW - timedelta(days=1)

    assert moved_on("New", at, Stay("New", at)) is None
    assert moved_on("Lost", at, Stay("Lost", at)) is None  # a closed status runs its steps while the lead is in it
    assert moved_on("New", at, Stay("Attempting", NOW)) == "the lead moved on to Attempting"
    assert "came back" in moved_on("New", at, Stay("New", NOW))
    assert moved_on("Proposal", at, Stay("Won", NOW, deal=True)) == "the deal moved on to Won"
    assert moved_on("New", at, None) == "the lead (or its deal) is gone"


@pytest.mark.parametrize("address, why", [
    ("jo@acme.test", None),
    ("noreplyson@acme.test", None),  # a person named so
    ("noreply@forms.example.com", "reads no mail"),
    ("no-reply+x@shop.example", "reads no mail"),
    ("do_not_reply@bank.example", "reads no mail"),
    ("bounces-123@lists.example", "reads no mail"),
    ("MAILER-DAEMON@mx.example", "reads no mail"),
    ("ana@example.com", "is an owner"),
    ("crm@example.com", "leadtap's own address"),
    (None, "no email address"),
])
def test_the_contact_gets_no_automatic_email_at_a_robots_an_owners_or_our_own_address(address, why):
    said = contact_refused(address, {"ana@example.com"}, {"crm@example.com"})

    assert (said is None) if why is None else (why in said)


def test_an_answer_has_one_re():
    assert reply_subject("Quote please") == "Re: Quote please"
    assert reply_subject("RE: Quote please") == "RE: Quote please"
    assert reply_subject("") == ""


# --- against the servers --------------------------------------------------------


@pytest.fixture
def flowing(env, mailbox, smtp):
    """The acknowledgement workflow on New; one enquiry waiting."""
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test", subject="Quote please",
                           message_id="<enquiry-1@forms.example.com>"))
    env.configure(mailbox.section(), extra=ACKNOWLEDGE + SMTP.format(port=smtp.port), owners=OWNERS_AND_SENIOR)
    env.upgrade()
    return env


OWNERS_AND_SENIOR = OWNERS + SENIOR


def run_steps(env: Env, at: datetime):
    app = build_app(str(env.path))
    try:
        return app.step_runner(clock=lambda: at).run()
    finally:
        app.close()


def step_rows(env: Env) -> list[tuple]:
    return step_rows_at(env.path)


def later(days: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=days, minutes=1)


def test_the_contact_is_acknowledged_once_under_the_enquiry_and_the_answer_joins_the_lead(flowing, smtp, mailbox):
    code, out, _ = flowing.cli("poll")

    assert code == 0 and "workflow steps: 0 done, 1 emails sent" in out
    (ack,) = smtp.messages
    assert ack["To"] == "jo@acme.test"  # the enquirer, not the form's no-reply sender
    assert ack["From"] == "Sales <crm@example.com>" and ack["Reply-To"] == "ana@example.com"
    # a web form's robot wrote the enquiry, not Jo: nothing of it to answer under
    assert ack["Subject"] == "Thank you for your enquiry" and ack["In-Reply-To"] is None
    assert ack["Auto-Submitted"] == "auto-replied" and ack["X-Leadtap"] == "workflow"
    assert "Ana will get back to you" in ack.get_body(("plain",)).get_content()
    flowing.cli("notify")
    assert len(smtp.messages) == 1

    # from another address of Jo's: only the thread ties it to the lead
    answer = plain_message("Thanks! Tuesday works.", sender="Jo <jo.smith@home.test>", subject="Re: Quote please",
                           headers={"In-Reply-To": ack["Message-ID"], "References": ack["Message-ID"]})
    mailbox.append(answer)
    code, out, _ = flowing.cli("poll")
    assert "1 added to a lead" in out and len(flowing.leads()) == 1


def test_an_enquiry_the_contact_wrote_is_answered_under_itself(env, mailbox, smtp):
    mailbox.append(plain_message("Could you send a quote for 20 seats?", sender="Jo Smith <jo@acme.test>",
                                 subject="Quote please", message_id="<jo-1@acme.test>"))
    env.configure(mailbox.section(templates=[]), extra=ACKNOWLEDGE + SMTP.format(port=smtp.port),
                  owners=OWNERS_AND_SENIOR)
    env.upgrade()

    assert env.poll() == 0

    (ack,) = smtp.messages
    assert ack["To"] == "jo@acme.test" and ack["Subject"] == "Re: Quote please"
    assert ack["In-Reply-To"] == ack["References"] == "<jo-1@acme.test>"
    assert "thank you for your message" in ack.get_body(("plain",)).get_content()


def test_a_lead_entered_by_hand_is_thanked_for_getting_in_touch(flowing, smtp):
    code, out, _ = flowing.cli("leads", "add", "--name", "Kim Lee", "--email", "kim@lee.test", "--owner",
                               "ben@example.com")

    assert code == 0 and "1 emails sent" in out
    (ack,) = smtp.messages
    assert ack["To"] == "kim@lee.test" and ack["Subject"] == "Thank you for your enquiry"
    assert "thank you for getting in touch, and Ben will get back" in ack.get_body(("plain",)).get_content()


def test_the_later_steps_run_when_due_and_the_lead_still_there(flowing, smtp):
    flowing.poll()

    assert run_steps(flowing, later(0.5)).done == 0  # nothing due yet
    assert run_steps(flowing, later(1)).done == 1  # the task
    report = run_steps(flowing, later(2))
    assert (report.done, report.sent) == (1, 1)  # the field set, the owner's nudge
    nudge = smtp.messages[-1]
    assert nudge["To"] == "ana@example.com" and nudge["Subject"] == "Lead #1 is still New: Jo Smith"
    assert run_steps(flowing, later(3)).done == 1  # to the seniors' rotation

    (lead,) = flowing.leads()
    assert lead["owner"] == "sam@example.com" and lead["fields"]["priority"] == "high"
    app = build_app(str(flowing.path))
    with app.db.transaction() as session:
        (task,) = session.scalars(select(Task))
        assert task.title == "Call Jo Smith" and task.state == "open"
    app.close()
    assert [row[4] for row in step_rows(flowing)] == ["sent", "done", "sent", "done", "done"]
    code, out, _ = flowing.cli("steps", "list", "--lead", "1")
    assert code == 0 and "New step 5 (assign)  done" in out


def test_a_step_whose_lead_moved_on_is_dropped_never_run(flowing, smtp):
    flowing.poll()
    assert flowing.cli("leads", "set", "1", "--status", "Attempting")[0] == 0

    report = run_steps(flowing, later(3))

    assert (report.done, report.sent, report.dropped) == (0, 0, 4)
    assert len(smtp.messages) == 1  # the acknowledgement, sent at once, only
    assert {row[5] for row in step_rows(flowing)[1:]} == {"the lead moved on to Attempting"}
    assert flowing.leads()[0]["owner"] == "ana@example.com"


def test_no_acknowledgement_answers_an_auto_reply_a_list_or_a_no_reply_address(env, mailbox, smtp):
    mailbox.append(enquiry(email="jo@acme.test", headers={"Auto-Submitted": "auto-replied"}))
    mailbox.append(enquiry(email="list@acme.test", headers={"List-Id": "<news.acme.test>"}))
    mailbox.append(plain_message("Your order has shipped.", sender="Shop <no-reply@shop.example>"))
    env.configure(mailbox.section(templates=[]), extra=ACKNOWLEDGE + SMTP.format(port=smtp.port),
                  owners=OWNERS_AND_SENIOR)
    env.upgrade()

    code, out, _ = env.cli("poll")

    assert code == 0 and "1 new lead" in out  # the auto-reply and the list's mail are no leads
    assert smtp.messages == []
    ((_, _, _, _, state, why), *_) = step_rows(env)
    assert state == "dropped" and why == "no-reply@shop.example reads no mail (a no-reply or robot address)"


def test_a_contact_gets_one_acknowledgement_in_its_period(flowing, smtp, mailbox):
    flowing.poll()
    assert flowing.cli("leads", "set", "1", "--status", "Disqualified")[0] == 0
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test", subject="Another question"))

    code, out, _ = flowing.cli("poll")

    assert "1 new lead" in out and len(smtp.messages) == 1  # lead 2, no second acknowledgement
    assert step_rows(flowing)[5][4:] == ("dropped", "jo@acme.test already had acknowledgement within 30d")


# --- two workers ---------------------------------------------------------------


def test_two_workers_racing_for_one_contact_take_its_period_once(postgres_url):
    """The claim itself: one transaction holds the contact's row, uncommitted; a
    second one waits on its key, then sees it taken."""
    db_a, db_b = Database(postgres_url), Database(postgres_url)
    upgrade_schema(db_a.engine)
    results: dict[str, bool] = {}
    holding, waiting = threading.Event(), threading.Event()

    def first():
        with db_a.transaction() as session:
            results["a"] = reserve_contact(session, "jo@acme.test", "ack", 1, NOW, timedelta(days=30))
            holding.set()
            waiting.wait(5)

    def second():
        holding.wait(5)
        with db_b.transaction() as session:
            results["b"] = reserve_contact(session, "jo@acme.test", "ack", 2, NOW, timedelta(days=30))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    threads[1].join(1.0)
    assert threads[1].is_alive()  # the second waits on the first's key
    waiting.set()
    for t in threads:
        t.join(10)
    assert results == {"a": True, "b": False}
    with db_a.transaction() as session:
        assert [(r.contact, r.step_id) for r in session.scalars(select(ContactEmail))] == [("jo@acme.test", 1)]
    db_a.dispose()
    db_b.dispose()


def test_two_workers_acknowledge_each_contact_once(tmp_path, postgres_url, smtp):
    """Forty leads owe an acknowledgement, two for each of twenty contacts (the
    first of each closed meanwhile, say); two `leadtap notify` at once. (Each
    claims what is due in one statement, so one of them may take all: the
    race for one contact's key itself is the test above.)"""
    config = write_config(tmp_path / "leadtap.toml", postgres_url, extra=SMTP.format(port=smtp.port) + (
        '[[statuses]]\nname = "New"\nsteps = [{ email = "contact", template = "acknowledgement" }]\n'))
    assert run_leadtap("db", "upgrade", config=config).returncode == 0
    entered = datetime.now(timezone.utc) - timedelta(minutes=5)
    db = Database(postgres_url)
    with db.transaction() as session:
        for n in range(40):
            contact = f"p{n % 20}@client.test"
            lead = Lead(name=f"Person {n}", email=contact, contact=contact, status="New", status_changed_at=entered,
                        source="Email", mailbox="sales", received_at=entered, created_at=entered, fields={})
            session.add(lead)
            session.flush()
            session.add(WorkflowStep(lead_id=lead.id, status="New", entered_at=entered, step=0, kind="email",
                                     fingerprint=ACK.fingerprint, state="pending", attempts=0,
                                     next_attempt_at=entered, created_at=entered))
    db.dispose()
    smtp.handler.delay = 0.005

    results = run_at_once(start(config, "notify"), start(config, "notify"))

    assert [code for code, _, _ in results] == [0, 0], results
    told = sorted(m["To"] for m in smtp.messages)
    assert told == sorted(f"p{n}@client.test" for n in range(20))  # each contact once
    rows = [row[4:] for row in step_rows_at(config)]
    assert rows.count(("sent", None)) == 20
    assert set(rows) - {("sent", None)} == {
        ("dropped", f"p{n}@client.test already had acknowledgement within 30d") for n in range(20)}


ACK = Step("email", to="contact", template="acknowledgement")  # as the config above reads it


def start(config, *args: str):
    return subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)


def step_rows_at(config) -> list[tuple]:
    app = build_app(str(config))
    try:
        with app.db.transaction() as session:
            return [(s.lead_id, s.status, s.step, s.kind, s.state, s.last_error)
                    for s in session.scalars(select(WorkflowStep).order_by(WorkflowStep.id))]
    finally:
        app.close()


# --- a deal stage's workflow ------------------------------------------------------

DEAL_STEPS = """
[opportunities.steps]
Discovery = [ { task = "Discovery call with {{ lead.name }}", due = "2d" } ]
Proposal = [
  { task = "Chase the proposal to {{ lead.company or lead.name }}", due = "1d", after = "3d" },
  { email = "owner", template = "status_nudge", after = "5d" },
]
"""


@pytest.fixture
def dealing(env, mailbox, smtp):
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test", company="ACME"))
    env.configure(mailbox.section(), extra=DEAL_STEPS + SMTP.format(port=smtp.port))
    env.upgrade()
    env.poll()
    return env


def task_titles(env: Env) -> list[str]:
    app = build_app(str(env.path))
    try:
        with app.db.transaction() as session:
            return list(session.scalars(select(Task.title).order_by(Task.id)))
    finally:
        app.close()


def test_a_deal_stage_runs_its_steps_while_the_deal_is_there(dealing, smtp):
    assert task_titles(dealing) == ["Discovery call with Jo Smith"]  # the new deal's first stage, at once
    code, out, _ = dealing.cli("opportunities", "set", "1", "--stage", "Proposal")
    assert code == 0 and "deal stage Proposal's workflow started" in out

    assert run_steps(dealing, later(3)).done == 1
    assert run_steps(dealing, later(5)).sent == 1
    assert task_titles(dealing)[-1] == "Chase the proposal to ACME"
    assert smtp.messages[-1]["To"] == "ana@example.com"
    assert [(row[1], row[4]) for row in step_rows(dealing)] == [("Discovery", "done"), ("Proposal", "done"),
                                                                ("Proposal", "sent")]


def test_a_deal_stage_task_is_dropped_once_the_lead_closed(dealing, smtp):
    dealing.cli("opportunities", "set", "1", "--stage", "Proposal")
    assert dealing.cli("leads", "set", "1", "--status", "Qualified")[0] == 0  # the deal stays in Proposal

    report = run_steps(dealing, later(3))

    assert (report.done, report.dropped) == (0, 1)
    assert step_rows(dealing)[1][4:] == (
        "dropped", "the lead is Qualified: a closed lead takes no new tasks and is not reassigned")


def test_a_deal_stage_step_is_dropped_once_the_deal_moves_on(dealing, smtp):
    dealing.cli("opportunities", "set", "1", "--stage", "Proposal")
    dealing.cli("opportunities", "set", "1", "--stage", "Negotiation")

    report = run_steps(dealing, later(5))

    assert (report.done, report.sent, report.dropped) == (0, 0, 2)
    assert {row[5] for row in step_rows(dealing)[1:]} == {"the deal moved on to Negotiation"}


@pytest.mark.parametrize("steps, words", [
    ('{ Closing = [{ task = "x", due = "1d" }] }', "'Closing' is not a stage"),
    ('{ Open = [{ set = { priority = "high" } }] }', "opportunities.steps.Open[0].set: a deal stage's steps are task, email, assign"),
    ('{ Open = { task = "x" } }', "opportunities.steps.Open: a list of steps is expected"),
])
def test_a_bad_deal_stage_step_is_refused(tmp_path, steps, words):
    text = config().replace('stages = ["Open", "Won", "Lost"]', f'stages = ["Open", "Won", "Lost"]\nsteps = {steps}')

    assert words in str(refused(tmp_path, text))


# --- what a review found ------------------------------------------------------------------


def contact_claims(env: Env) -> list[tuple[str, int]]:
    app = build_app(str(env.path))
    try:
        with app.db.transaction() as session:
            return [(c.contact, c.step_id) for c in session.scalars(select(ContactEmail))]
    finally:
        app.close()


def test_an_acknowledgement_never_sent_frees_the_contacts_period(flowing, smtp, mailbox):
    smtp.handler.refuse["jo@acme.test"] = "450 4.2.1 mailbox full"
    flowing.poll()  # refused for now: retried later
    (_, _, _, _, state, error) = step_rows(flowing)[0]
    assert state == "pending" and "450 4.2.1 mailbox full" in error
    assert flowing.cli("leads", "set", "1", "--status", "Disqualified")[0] == 0
    run_steps(flowing, later(0.1))  # the lead moved on: dropped, and the period given back
    assert contact_claims(flowing) == []

    del smtp.handler.refuse["jo@acme.test"]
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test", subject="Still interested"))
    flowing.poll()
    assert [m["To"] for m in smtp.messages] == ["jo@acme.test"]  # lead 2's acknowledgement, the first one sent


def test_an_acknowledgement_cut_off_mid_send_is_not_sent_twice(flowing, smtp):
    from leadtap.core.store.db import WorkflowStep as Row

    flowing.configure(*flowing.sections, extra=ACKNOWLEDGE + SMTP.format(port=1), owners=OWNERS_AND_SENIOR)
    flowing.poll()  # our SMTP server is down: released, no attempt
    assert step_rows(flowing)[0][4:] == ("pending", None)
    app = build_app(str(flowing.path))
    with app.db.transaction() as session:  # as a sender leaves it when it dies between DATA and recording
        row = session.get(Row, 1)
        row.state, row.token, row.message_id = "claimed", "dead", "<leadtap.1@example.com>"
        row.claimed_at = datetime.now(timezone.utc) - timedelta(hours=1)
    app.close()
    flowing.configure(*flowing.sections, extra=ACKNOWLEDGE + SMTP.format(port=smtp.port), owners=OWNERS_AND_SENIOR)

    report = run_steps(flowing, later(0))

    assert (report.sent, report.dropped) == (0, 1) and smtp.messages == []
    assert "cut off mid-send" in step_rows(flowing)[0][5]
    assert [c for c, _ in contact_claims(flowing)] == ["jo@acme.test"]  # it may have gone out: the period holds


def test_a_reply_that_moves_a_lead_out_and_back_in_one_moment_owes_the_steps_once(flowing):
    from leadtap.core.use_cases import changes

    flowing.poll()
    app = build_app(str(flowing.path))
    rules, now = app.lead_rules(), datetime.now(timezone.utc)
    with app.db.transaction() as session:
        for status in ("Attempting", "New", "Attempting", "New"):
            changes.set_status(session, rules, 1, status, lifecycle.actor_for(None, rules.pipeline), now)
    app.close()

    assert [row[1] for row in step_rows(flowing)].count("New") == 5 + 5  # the enquiry's stay, and this one


def test_a_step_that_fails_on_a_bug_is_retried_alone(flowing, smtp, mailbox, monkeypatch):
    from leadtap.core.use_cases import workflows

    mailbox.append(enquiry(name="Kim Lee", email="kim@lee.test"))
    flowing.poll()
    real = workflows.run_in_database

    def broken(session, rules, row, step, lead, now):
        if lead.id == 1:
            raise RuntimeError("a bug")
        return real(session, rules, row, step, lead, now)

    monkeypatch.setattr(workflows, "run_in_database", broken)
    report = run_steps(flowing, later(1))

    assert (report.done, report.retry) == (1, 1)
    assert [row[4:] for row in step_rows(flowing) if row[2] == 1] == [("pending", "RuntimeError: a bug"),
                                                                      ("done", None)]


def test_an_assign_step_leaves_a_lead_already_with_that_role(flowing):
    flowing.poll()
    assert flowing.cli("leads", "assign", "1", "sam@example.com")[0] == 0

    report = run_steps(flowing, later(3))

    assert flowing.leads()[0]["owner"] == "sam@example.com" and report.dropped == 1
    assert step_rows(flowing)[4][4:] == ("dropped", "the lead is already with sam@example.com, of the seniors role")


def test_a_renamed_status_keeps_its_steps(flowing, smtp):
    flowing.poll()
    renamed = ACKNOWLEDGE.replace('name = "New"', 'name = "Fresh"')
    statuses = ('[leads]\nstatuses = ["Fresh", "Attempting", "Contacted", "Qualified", "Disqualified"]\n'
                'closed_statuses = ["Qualified", "Disqualified"]\ndefault_status = "Fresh"\n')
    text = flowing.path.read_text().replace(
        '[leads]\nstatuses = ["New", "Attempting", "Contacted", "Offer submitted", "Qualified", "Disqualified"]\n'
        'closed_statuses = ["Qualified", "Disqualified"]\n', statuses).replace(ACKNOWLEDGE, renamed)
    flowing.path.write_text(text)
    assert flowing.cli("leads", "rename-status", "New", "Fresh")[0] == 0

    assert run_steps(flowing, later(1)).done == 1  # the task step, in the renamed status


def test_a_step_changed_in_the_config_or_days_late_is_not_run(flowing, smtp):
    flowing.poll()
    flowing.configure(*flowing.sections, extra=ACKNOWLEDGE.replace("due = \"4h\"", "due = \"8h\"")
                      + SMTP.format(port=smtp.port), owners=OWNERS_AND_SENIOR)

    report = run_steps(flowing, later(10))

    assert report.dropped == 4 and report.done == report.sent == 0
    whys = [row[5] for row in step_rows(flowing)[1:]]
    assert whys[0] == "status New's workflow no longer has this step (the config changed)"
    assert all("too late to run" in why for why in whys[1:])
