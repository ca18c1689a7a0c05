"""People change leads from the command line (leads set|assign|note|snooze,
tasks list|done), on SQLite and PostgreSQL: the rules of core.rules.lifecycle
refuse with their words and change nothing; an accepted change is the
lead's new state, its history and its tasks."""

from __future__ import annotations

import json

import pytest

from tests.helpers import enquiry
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)

PIPELINE = '''
[pipeline]
no_skipping = true
no_going_back = true
admins = ["cy@example.com"]
qualified = "Qualified"
disqualified = "Disqualified"
disqualify_reasons = ["No budget", "Bad timing", "Other"]
other_reason = "Other"
lock_converted = true
follow_up = { reasons = ["Bad timing"], after = "90d" }

[[statuses]]
name = "Attempting"
set_on = "outreach"
locked = true
tasks = [ { title = "Call {{ lead.name }}", due = "1d" } ]

[[statuses]]
name = "Contacted"
required = ["budget"]
tasks = [ { title = "Send the brochure to {{ lead.company }}", due = "2d" } ]

[opportunities]
auto_create = false
'''


@pytest.fixture
def leads(env, mailbox):
    """Two leads, ids 1 (owner ana) and 2 (owner ben), with the pipeline's rules."""
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test", company="ACME"))
    mailbox.append(enquiry(name="Al Jones", email="al@client.test", company="Bolt"))
    env.configure(mailbox.section(), extra=PIPELINE)
    env.upgrade()
    assert env.poll() == 0
    return env


def show(env: Env, lead_id: int) -> dict:
    code, out, _ = env.cli("leads", "show", str(lead_id))
    assert code == 0
    return json.loads(out)


def refused(env: Env, *args: str) -> str:
    before = show(env, 1)
    code, out, err = env.cli(*args)
    assert code == 1, out
    assert show(env, 1) == before  # nothing changed
    return err.strip().splitlines()[-1]  # after the config warnings the test setup causes


def test_a_refused_move_names_the_rule_and_changes_nothing(leads):
    assert refused(leads, "leads", "set", "1", "--status", "Offer submitted", "--by", "ana@example.com") == (
        "leadtap: lead 1: cannot move from New to Offer submitted: no skipping (next is Contacted)")
    assert refused(leads, "leads", "set", "1", "--status", "Attempting") == (
        "leadtap: lead 1: Attempting is set automatically (on outreach)")
    assert refused(leads, "leads", "set", "1", "--status", "Disqualified") == (
        "leadtap: lead 1: Disqualified needs a reason: one of No budget, Bad timing, Other")
    assert refused(leads, "leads", "set", "1", "--status", "Bogus") == (
        "leadtap: lead 1: unknown status 'Bogus'; expected one of New, Attempting, Contacted, Offer submitted, "
        "Qualified, Disqualified")
    assert refused(leads, "leads", "set", "1", "--status", "Qualified", "--by", "zed@example.com") == (
        "leadtap: 'zed@example.com' is not an owner: --by names an owner's email")


def test_an_admin_move_records_the_history_creates_the_tasks_and_fields(leads):
    code, out, _ = leads.cli("leads", "set", "1", "--status", "Contacted", "--field", "budget=10k",
                             "--note", "called")

    assert code == 0 and out.startswith("lead 1: budget = 10k; New → Contacted")
    lead = show(leads, 1)
    assert (lead["status"], lead["fields"]["budget"]) == ("Contacted", "10k")
    assert [t["title"] for t in lead["tasks"]] == ["Send the brochure to ACME"]
    status = [a for a in lead["activities"] if a["kind"] == "status"]
    assert status[-1]["details"] == {"by": "cli", "how": "cli", "from": "New", "to": "Contacted", "note": "called"}
    assert lead["last_activity_at"] is not None


def test_a_required_field_is_needed_even_from_the_command_line(leads):
    assert refused(leads, "leads", "set", "1", "--status", "Contacted") == "leadtap: lead 1: Contacted needs budget"


def test_qualifying_creates_the_opportunity_and_locks_the_lead_for_non_admins(leads):
    assert leads.cli("leads", "set", "1", "--status", "Qualified")[0] == 0
    assert show(leads, 1)["opportunity"] is not None

    assert refused(leads, "leads", "set", "1", "--status", "Disqualified", "--reason", "No budget",
                   "--by", "ana@example.com") == "leadtap: lead 1 is Qualified: only an admin can change it"
    assert leads.cli("leads", "set", "1", "--status", "Disqualified", "--reason", "No budget",
                     "--by", "cy@example.com")[0] == 0


def test_disqualifying_for_a_follow_up_reason_makes_a_snoozed_follow_up_lead(leads):
    assert leads.cli("leads", "set", "1", "--status", "Disqualified", "--reason", "Bad timing")[0] == 0

    follow = show(leads, 3)
    assert (follow["follow_up_of"], follow["status"], follow["owner"], follow["email"]) == (
        1, "New", "ana@example.com", "jo@client.test")
    assert follow["snoozed_until"] is not None


def test_closing_a_lead_cancels_its_open_tasks(leads):
    leads.cli("leads", "set", "1", "--status", "Contacted", "--field", "budget=1")
    assert leads.cli("leads", "set", "1", "--status", "Disqualified", "--reason", "No budget")[0] == 0

    assert [t["state"] for t in show(leads, 1)["tasks"]] == ["cancelled"]


def test_reassigning_moves_the_lead_and_its_open_tasks(leads):
    leads.cli("leads", "set", "1", "--status", "Contacted", "--field", "budget=1")

    code, out, _ = leads.cli("leads", "assign", "1", "cy@example.com", "--by", "ana@example.com")

    assert code == 0 and "owner ana@example.com → cy@example.com" in out
    code, out, _ = leads.cli("tasks", "list", "--owner", "cy@example.com", "--format", "json")
    assert [t["lead"] for t in json.loads(out)] == [1]


def test_assign_next_takes_the_rotations_next_owner(leads):
    code, out, _ = leads.cli("leads", "assign", "2", "next")  # ana had lead 1, ben lead 2: cy is next

    assert code == 0 and show(leads, 2)["owner"] == "cy@example.com"


def test_notes_and_snoozes_are_recorded_and_an_activity_ends_a_snooze(leads):
    assert leads.cli("leads", "snooze", "1", "3d", "--by", "ana@example.com")[0] == 0
    assert show(leads, 1)["snoozed_until"] is not None

    assert leads.cli("leads", "note", "1", "Called, call back Friday")[0] == 0

    lead = show(leads, 1)
    assert lead["snoozed_until"] is None
    assert [a["summary"] for a in lead["activities"] if a["kind"] == "note"] == ["Called, call back Friday"]
    assert refused(leads, "leads", "snooze", "1", "soon") == (
        "leadtap: snooze until 'soon': 'soon' is not a duration; expected e.g. \"60s\", \"15m\", \"1h30m\", \"2d\"; "
        "or a date such as 2026-12-01")


def test_a_task_is_done_once(leads):
    leads.cli("leads", "set", "1", "--status", "Contacted", "--field", "budget=1")
    task = show(leads, 1)["tasks"][0]["id"]

    assert leads.cli("tasks", "done", str(task), "--by", "ana@example.com")[0] == 0
    assert leads.cli("tasks", "done", str(task))[0] == 1
    assert show(leads, 1)["tasks"][0]["state"] == "done"
    assert "(0 open tasks)" in leads.cli("tasks", "list")[1]


def test_check_renders_every_task_title(env, mailbox):
    env.configure(mailbox.section(), extra=PIPELINE.replace("Send the brochure to {{ lead.company }}",
                                                            "Send the brochure to {{ lead.company"))
    env.upgrade()

    code, out, _ = env.cli("check")

    assert code == 1
    assert "ok    task 1 of Attempting: renders: 'Call Sample Lead'" in out
    assert "FAIL  task 1 of Contacted: task title" in out


def test_leads_list_filters_snoozed_and_stale_leads_and_refuses_an_unknown_status(leads):
    leads.cli("leads", "snooze", "2", "3d")

    code, out, _ = leads.cli("leads", "list", "--snoozed", "--format", "json")
    assert code == 0 and [lead["id"] for lead in json.loads(out)] == [2]
    code, out, _ = leads.cli("leads", "list", "--stale", "1d", "--format", "json")
    assert code == 0 and json.loads(out) == []  # both were just touched
    code, out, _ = leads.cli("leads", "list", "--stale", "0.001s", "--format", "json")
    assert [lead["id"] for lead in json.loads(out)] == [1, 2]
    code, _, err = leads.cli("leads", "list", "--status", "Bogus")
    assert code == 2 and "unknown status 'Bogus'; expected one of New, Attempting" in err


def test_fields_are_clipped_to_their_columns_and_a_new_email_is_the_contact(leads):
    assert leads.cli("leads", "set", "1", "--status", "Contacted", "--field", "budget=1",
                     "--field", "phone=" + "9" * 200, "--field", "email=Jo.New@Client.test")[0] == 0

    lead = show(leads, 1)
    assert len(lead["phone"]) == 100 and lead["email"] == "Jo.New@Client.test"
    assert refused(leads, "leads", "set", "1", "--status", "Offer submitted", "--field", "email=nope") == (
        "leadtap: lead 1: 'nope' is not an email address")


def test_an_id_out_of_range_is_a_usage_error(leads):
    with pytest.raises(SystemExit) as exited:
        leads.cli("leads", "show", "99999999999999999999")
    assert exited.value.code == 2


def test_a_task_title_that_fails_on_a_lead_is_a_render_error():
    from leadtap.scheduler.render import RenderError, Renderer

    with pytest.raises(RenderError, match="TypeError"):
        Renderer().render_title("{{ lead.name + ' at ' + lead.company }}", {"name": "Jo", "company": None})


def test_a_field_the_lead_does_not_have_prints_as_nothing_in_titles_and_emails():
    from leadtap.scheduler.render import Renderer

    renderer = Renderer()
    assert renderer.render_title("Call {{ lead.name }} at {{ lead.company }}", {"name": "Jo", "company": None}) \
        == "Call Jo at"
    assert renderer.env.from_string("Hi {{ lead.name }}, {{ n }} {{ flag }}").render(
        lead={"name": None}, n=0, flag=False) == "Hi , 0 False"


def test_a_task_added_by_hand_is_the_owners_and_a_closed_lead_takes_none(leads):
    code, out, _ = leads.cli("tasks", "add", "2", "Send {{ not a template }}", "--due", "2026-12-01",
                             "--by", "ben@example.com")

    assert code == 0 and "task due 2026-12-01T00:00:00+00:00" in out  # midnight in [reminders].timezone (UTC here)
    code, out, _ = leads.cli("tasks", "list", "--lead", "2", "--format", "json")
    assert [(t["title"], t["owner"]) for t in json.loads(out)] == [("Send {{ not a template }}", "ben@example.com")]
    leads.cli("leads", "set", "2", "--status", "Disqualified", "--reason", "No budget")
    code, _, err = leads.cli("tasks", "add", "2", "Call", "--due", "1d")
    assert code == 1 and "lead 2 is Disqualified: a closed lead takes no new tasks" in err


def test_an_opportunity_entering_a_stage_moves_its_lead_to_the_status_set_on_it(env, mailbox):
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra='[[statuses]]\nname = "Offer submitted"\nset_on = "stage:Proposal"\n'
                                           'locked = true\n')
    env.upgrade()
    env.poll()
    opportunity = show(env, 1)["opportunity"]
    assert opportunity["stage"] == "Discovery"

    code, out, _ = env.cli("opportunities", "set", str(opportunity["id"]), "--stage", "Proposal",
                           "--by", "ana@example.com")

    assert code == 0 and out.strip() == "lead 1: deal Discovery → Proposal; New → Offer submitted"
    shown = show(env, 1)
    assert (shown["status"], shown["opportunity"]["stage"]) == ("Offer submitted", "Proposal")
    assert [(a["kind"], a["details"]["by"]) for a in shown["activities"][-2:]] == [
        ("stage", "ana@example.com"), ("status", "automation")]
    code, _, err = env.cli("opportunities", "set", str(opportunity["id"]), "--stage", "Signed")
    assert code == 1 and "deal 1: 'Signed' is not a stage" in err
    code, _, err = env.cli("opportunities", "set", "99", "--stage", "Won")
    assert code == 1 and "no opportunity with id 99" in err


def test_statuses_stages_and_reasons_match_without_regard_to_case_as_by_email(leads):
    assert leads.cli("leads", "set", "1", "--status", "contacted", "--field", "budget=1")[0] == 0
    assert leads.cli("leads", "set", "1", "--status", "DISQUALIFIED", "--reason", "bad TIMING")[0] == 0
    lead = show(leads, 1)
    (moved,) = [a for a in lead["activities"] if a["summary"] == "Contacted → Disqualified"]
    assert lead["status"] == "Disqualified" and "Bad timing" in json.dumps(moved["details"])
    code, out, _ = leads.cli("leads", "list", "--status", "disqualified")
    assert code == 0 and "(1 lead)" in out


def test_a_task_due_in_the_past_is_added_with_a_word_that_it_is_overdue(leads):
    code, out, err = leads.cli("tasks", "add", "1", "Call Jo", "--due", "2020-01-02")

    assert code == 0 and "task due 2020-01-02" in out
    assert "the task is due 2020-01-02 00:00, in the past: it is overdue from the start" in err
    assert "in the past" not in leads.cli("tasks", "add", "1", "Call Jo", "--due", "2d")[2]
