"""The lead lifecycle's rules (core.rules.lifecycle), one by one: pure code, no
server, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from leadtap.core.rules.lifecycle import (
    AUTOMATED,
    Actor,
    AutomationBlocked,
    ContactLogged,
    Created,
    DealLost,
    StatusTasksCancelled,
    FieldsSet,
    FollowUp,
    FollowUpLead,
    LeadState,
    NoteAdded,
    OpenTasksCancelled,
    OpportunityNeeded,
    OwnerChanged,
    Pipeline,
    Refused,
    Snoozed,
    StageChanged,
    StatusChanged,
    StatusOptions,
    TaskDue,
    TaskTemplate,
    actor_for,
    add_note,
    assign,
    create,
    log_contact,
    move,
    on_activity,
    snooze,
)

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
STATUSES = ("New", "Attempting", "Connected", "Qualified", "Disqualified")
PIPELINE = Pipeline(
    statuses=STATUSES,
    closed=("Qualified", "Disqualified"),
    default_status="New",
    no_skipping=True,
    no_going_back=True,
    admins=frozenset({"boss@example.com"}),
    qualified="Qualified",
    disqualified="Disqualified",
    disqualify_reasons=("No budget", "Bad timing", "Other"),
    other_reason="Other",
    lock_converted=True,
    follow_up=FollowUp(("Bad timing",), timedelta(days=90)),
    options={
        "Attempting": StatusOptions("Attempting", set_on="outreach", locked=True,
                                    tasks=(TaskTemplate("Call {{ lead.name }}", timedelta(days=1)),)),
        "Connected": StatusOptions("Connected", set_on="reply", required=("phone",)),
    },
)
ANA = Actor("ana@example.com", "cli")
BOSS = actor_for("boss@example.com", PIPELINE)


def lead(status: str = "New", **kw) -> LeadState:
    return LeadState(id=12, status=status, owner="ana@example.com", **kw)


def refusal(*args, **kwargs) -> str:
    with pytest.raises(Refused) as refused:
        move(*args, **kwargs)
    return str(refused.value)


# --- moving by hand ----------------------------------------------------------------------


def test_an_open_status_may_not_be_skipped():
    unlocked = replace(PIPELINE, options={})

    assert refusal(lead("New"), "Connected", unlocked, ANA, NOW) == (
        "lead 12: cannot move from New to Connected: no skipping (next is Attempting)")


def test_a_person_passes_over_a_status_only_automation_sets():
    change = move(lead("New", fields={"phone": "1"}), "Connected", PIPELINE, ANA, NOW)

    assert change.of(StatusChanged) == [StatusChanged("New", "Connected")]


def test_a_lead_in_a_status_no_longer_configured_is_moved_by_admins_and_left_alone_by_automation():
    stray = lead("Prospect")

    assert refusal(stray, "New", PIPELINE, ANA, NOW) == (
        "lead 12 is Prospect, no longer a configured status: only an admin can move it")
    assert move(stray, "New", PIPELINE, BOSS, NOW).of(StatusChanged) == [StatusChanged("Prospect", "New")]
    assert on_activity(stray, "outreach", PIPELINE, NOW) is None


def test_a_field_named_email_must_be_an_address():
    assert refusal(lead("Connected"), "Qualified", PIPELINE, BOSS, NOW, values={"email": "nope"}) == (
        "lead 12: 'nope' is not an email address")


def test_a_closed_status_is_always_reachable():
    change = move(lead("New"), "Disqualified", PIPELINE, ANA, NOW, reason="No budget")

    assert change.of(StatusChanged) == [StatusChanged("New", "Disqualified", "No budget")]


def test_a_locked_status_is_set_by_automation_only():
    assert refusal(lead("New"), "Attempting", PIPELINE, ANA, NOW) == "lead 12: Attempting is set automatically (on outreach)"
    assert refusal(lead("New"), "Attempting", PIPELINE, BOSS, NOW) == "lead 12: Attempting is set automatically (on outreach)"


def test_a_lead_never_goes_back_with_no_going_back():
    assert refusal(lead("Connected", fields={"phone": "1"}), "New", PIPELINE, ANA, NOW) == (
        "lead 12: cannot move from Connected back to New: no going back")


def test_a_status_with_required_fields_needs_them_filled():
    assert refusal(lead("Attempting"), "Connected", PIPELINE, ANA, NOW) == "lead 12: Connected needs phone"


def test_fields_given_with_the_move_count_for_the_required_ones():
    change = move(lead("Attempting"), "Connected", PIPELINE, ANA, NOW, values={"phone": "+370 600"})

    assert change.events[:2] == (FieldsSet({"phone": "+370 600"}), StatusChanged("Attempting", "Connected"))


def test_disqualifying_needs_a_reason_from_the_list():
    assert refusal(lead(), "Disqualified", PIPELINE, ANA, NOW) == (
        "lead 12: Disqualified needs a reason: one of No budget, Bad timing, Other")
    assert refusal(lead(), "Disqualified", PIPELINE, ANA, NOW, reason="Meh") == (
        "lead 12: 'Meh' is not a reason for Disqualified: one of No budget, Bad timing, Other")


def test_the_other_reason_needs_a_note():
    assert refusal(lead(), "Disqualified", PIPELINE, ANA, NOW, reason="Other") == (
        "lead 12: the reason 'Other' needs a note saying what it was")

    change = move(lead(), "Disqualified", PIPELINE, ANA, NOW, reason="Other", note="Moved to 2027")

    assert change.of(StatusChanged)[0].note == "Moved to 2027"


def test_a_converted_lead_is_changed_by_admins_only():
    assert refusal(lead("Qualified"), "Disqualified", PIPELINE, ANA, NOW, reason="No budget") == (
        "lead 12 is Qualified: only an admin can change it")

    assert move(lead("Qualified"), "New", PIPELINE, BOSS, NOW).of(StatusChanged)


def test_admins_and_the_command_line_are_exempt_from_the_order_rules():
    for actor in (BOSS, actor_for(None, PIPELINE)):
        assert move(lead("New", fields={"phone": "1"}), "Connected", PIPELINE, actor, NOW).of(StatusChanged)
        assert move(lead("Connected"), "New", PIPELINE, actor, NOW).of(StatusChanged)


def test_admins_still_need_the_required_fields_and_a_reason():
    assert refusal(lead("New"), "Connected", PIPELINE, BOSS, NOW) == "lead 12: Connected needs phone"
    assert "needs a reason" in refusal(lead("New"), "Disqualified", PIPELINE, BOSS, NOW)


def test_an_unknown_status_or_the_same_one_is_refused():
    assert refusal(lead(), "Bogus", PIPELINE, BOSS, NOW) == (
        "lead 12: unknown status 'Bogus'; expected one of New, Attempting, Connected, Qualified, Disqualified")
    assert refusal(lead(), "New", PIPELINE, BOSS, NOW) == "lead 12 is already New"


def test_without_pipeline_rules_any_status_may_follow_any_other():
    free = Pipeline(statuses=STATUSES, closed=("Qualified", "Disqualified"))

    assert move(lead("Qualified"), "New", free, ANA, NOW).of(StatusChanged)
    assert move(lead("New"), "Connected", free, ANA, NOW).of(StatusChanged)


# --- what a move does --------------------------------------------------------------------


def test_entering_a_status_creates_its_tasks_due_from_now():
    change = move(lead("New"), "Attempting", PIPELINE, AUTOMATED, NOW)

    assert change.of(TaskDue) == [TaskDue("Call {{ lead.name }}", NOW + timedelta(days=1), status="Attempting")]


def test_leaving_a_status_for_an_open_one_cancels_the_tasks_it_made_unless_they_are_kept():
    moved = move(lead("Attempting"), "Connected", PIPELINE, ANA, NOW, values={"phone": "1"})
    kept = move(lead("Attempting"), "Connected", replace(PIPELINE, tasks_on_leave="keep"), ANA, NOW,
                values={"phone": "1"})

    assert moved.of(StatusTasksCancelled) == [StatusTasksCancelled("Attempting")]
    assert not kept.of(StatusTasksCancelled)
    assert not move(lead("New"), "Attempting", PIPELINE, AUTOMATED, NOW).of(StatusTasksCancelled)  # New has none
    closing = move(lead("Attempting"), "Qualified", PIPELINE, BOSS, NOW)  # closing cancels them all anyway
    assert closing.of(OpenTasksCancelled) and not closing.of(StatusTasksCancelled)


def test_qualifying_a_lead_without_an_opportunity_asks_for_one():
    assert move(lead("Connected"), "Qualified", PIPELINE, ANA, NOW).of(OpportunityNeeded)
    assert not move(lead("Connected", has_opportunity=True), "Qualified", PIPELINE, ANA, NOW).of(OpportunityNeeded)


def test_closing_a_lead_cancels_its_open_tasks():
    assert move(lead("Connected"), "Qualified", PIPELINE, ANA, NOW).of(OpenTasksCancelled)
    assert not move(lead("Attempting"), "Connected", PIPELINE, ANA, NOW, values={"phone": "1"}).of(OpenTasksCancelled)


def test_disqualifying_for_a_follow_up_reason_makes_a_follow_up_lead_snoozed_for_its_time():
    change = move(lead(), "Disqualified", PIPELINE, ANA, NOW, reason="Bad timing")

    assert change.of(FollowUpLead) == [FollowUpLead(NOW + timedelta(days=90))]
    assert not move(lead(), "Disqualified", PIPELINE, ANA, NOW, reason="No budget").of(FollowUpLead)


def test_a_person_moving_a_lead_back_stops_automation_for_it():
    free = Pipeline(statuses=STATUSES, closed=("Qualified", "Disqualified"), options=PIPELINE.options)

    assert move(lead("Connected"), "New", free, ANA, NOW).of(StatusChanged)[0].moved_back
    assert not move(lead("New"), "Connected", free, ANA, NOW, values={"phone": "1"}).of(StatusChanged)[0].moved_back


# --- automation ----------------------------------------------------------------------------


def test_outreach_moves_a_new_lead_to_the_status_set_on_outreach():
    change = on_activity(lead("New"), "outreach", PIPELINE, NOW)

    assert change.actor == AUTOMATED
    assert change.of(StatusChanged) == [StatusChanged("New", "Attempting")]


def test_a_reply_after_outreach_moves_the_lead_on_and_one_without_does_not():
    ready = lead("Attempting", fields={"phone": "1"})

    assert on_activity(ready, "reply", PIPELINE, NOW) is None
    assert on_activity(LeadState(12, "Attempting", fields={"phone": "1"}, had_outreach=True), "reply", PIPELINE,
                       NOW).of(StatusChanged) == [StatusChanged("Attempting", "Connected")]


def test_automation_only_moves_forward():
    assert on_activity(lead("Connected", had_outreach=True), "outreach", PIPELINE, NOW) is None


def test_automation_never_moves_a_closed_lead():
    assert on_activity(lead("Disqualified"), "outreach", PIPELINE, NOW) is None


def test_automation_leaves_alone_a_lead_a_person_moved_back():
    assert on_activity(lead("New", automation_stopped=True), "outreach", PIPELINE, NOW) is None


def test_automation_does_not_move_a_lead_missing_a_required_field_and_says_so_once():
    change = on_activity(lead("Attempting", had_outreach=True), "reply", PIPELINE, NOW)

    (blocked,) = change.of(AutomationBlocked)
    assert change.actor == AUTOMATED and not change.of(StatusChanged)
    assert blocked.summary == "reply received; not moved to Connected: needs phone"
    assert on_activity(lead("Attempting", had_outreach=True, blocked=blocked.summary), "reply", PIPELINE,
                       NOW) is None  # said already: not again until something changes


LOSING = replace(PIPELINE, options={**PIPELINE.options,
                                    "Disqualified": StatusOptions("Disqualified", set_on="stage:Lost")})


def test_a_deal_lost_closes_its_lead_with_the_same_reason_or_the_other_one_and_a_note():
    same = on_activity(lead("Attempting", has_opportunity=True), "stage:Lost", LOSING, NOW, "No budget", "cut")
    other = on_activity(lead("Attempting"), "stage:Lost", LOSING, NOW, "Price", None)

    assert same.of(StatusChanged) == [StatusChanged("Attempting", "Disqualified", "No budget",
                                                    "the deal was lost: No budget (cut)")]
    assert same.of(DealLost)  # its deal is closed already: the recorder leaves it
    assert other.of(StatusChanged)[0].reason == "Other"
    assert other.of(StatusChanged)[0].note == "the deal was lost: Price"


def test_a_deal_lost_waits_for_a_person_when_no_reason_fits():
    strict = replace(LOSING, other_reason=None)

    change = on_activity(lead("Attempting"), "stage:Lost", strict, NOW, "Price", None)

    assert change.of(AutomationBlocked)[0].summary == "deal moved to Lost; not moved to Disqualified: needs a reason"


def test_a_trigger_no_status_is_set_on_moves_nothing():
    assert on_activity(lead("New"), "stage:Proposal", PIPELINE, NOW) is None


# --- owner, notes, snooze ------------------------------------------------------------------


def test_reassigning_names_the_old_and_new_owner():
    assert assign(lead(), "ben@example.com", PIPELINE, ANA, NOW).events == (
        OwnerChanged("ana@example.com", "ben@example.com"),)


def test_a_converted_lead_is_reassigned_by_admins_only():
    with pytest.raises(Refused, match="only an admin can change it"):
        assign(lead("Qualified"), "ben@example.com", PIPELINE, ANA, NOW)
    assert assign(lead("Qualified"), "ben@example.com", PIPELINE, BOSS, NOW).events


def test_reassigning_to_the_same_owner_is_refused():
    with pytest.raises(Refused, match="already ana@example.com's"):
        assign(lead(), "ana@example.com", PIPELINE, ANA, NOW)


def test_a_note_needs_text():
    assert add_note(lead(), "  Called, call back Friday ", ANA, NOW).events == (NoteAdded("Called, call back Friday"),)
    with pytest.raises(Refused, match="needs some text"):
        add_note(lead(), "   ", ANA, NOW)


def test_a_snooze_ends_in_the_future_and_only_for_an_open_lead():
    assert snooze(lead(), NOW + timedelta(days=3), PIPELINE, ANA, NOW).events == (Snoozed(NOW + timedelta(days=3)),)
    with pytest.raises(Refused, match="must end in the future"):
        snooze(lead(), NOW, PIPELINE, ANA, NOW)
    with pytest.raises(Refused, match="closed lead"):
        snooze(lead("Qualified"), NOW + timedelta(days=1), PIPELINE, ANA, NOW)


def test_by_names_an_owner_and_admins_are_known_by_their_email():
    assert actor_for("Boss@Example.com", PIPELINE).admin
    assert not actor_for("ana@example.com", PIPELINE).admin
    assert actor_for(None, PIPELINE) == Actor("cli", "cli", admin=True)


# --- opportunity stages ------------------------------------------------------------------

STAGES = ("Discovery", "Proposal", "Won", "Lost")
STAGED = replace(PIPELINE, options={**PIPELINE.options, "Attempting": StatusOptions("Attempting", set_on="stage:Proposal",
                                                                                   locked=True)})


def test_the_status_set_on_a_stage_follows_it_forward_only():
    moved = on_activity(lead(), "stage:Proposal", STAGED, NOW)
    assert moved.actor == AUTOMATED and moved.of(StatusChanged) == [StatusChanged("New", "Attempting")]
    assert on_activity(lead("Connected"), "stage:Proposal", STAGED, NOW) is None  # never back
    assert on_activity(lead("Qualified"), "stage:Proposal", STAGED, NOW) is None  # never out of a closed status
    assert on_activity(lead(automation_stopped=True), "stage:Proposal", STAGED, NOW) is None
    assert on_activity(lead(), "stage:Won", STAGED, NOW) is None  # no status follows that stage


def test_a_won_deal_qualifies_its_lead_unless_a_status_is_set_on_that_stage():
    from leadtap.core.rules.lifecycle import Pipeline, StatusOptions, won_deals_qualify

    plain = Pipeline(("New", "Contacted", "Qualified", "Lost"), closed=("Qualified", "Lost"), default_status="New",
                     qualified="Qualified")
    assert won_deals_qualify(plain, "Won").set_on("stage:Won") == "Qualified"
    assert won_deals_qualify(plain, None) is plain
    assert won_deals_qualify(Pipeline(plain.statuses, plain.closed, "New"), "Won").set_on("stage:Won") is None
    chosen = Pipeline(plain.statuses, plain.closed, "New", qualified="Qualified",
                      options={"Contacted": StatusOptions("Contacted", set_on="stage:Won")})
    assert won_deals_qualify(chosen, "Won").set_on("stage:Won") == "Contacted"  # the config's own choice


# --- a lead entered by hand -----------------------------------------------------------------


def test_a_lead_entered_by_hand_brings_its_status_s_tasks_and_its_deal():
    entry = LeadState(0, "Attempting", "ana@example.com", {"name": "Jo", "phone": "1"})

    change = create(entry, "Phone", ("Email", "Phone"), PIPELINE, AUTOMATED, NOW, "rotation", opportunity=True)

    assert change.events == (Created("Attempting", "Phone", "ana@example.com", "rotation"), OpportunityNeeded(),
                             TaskDue("Call {{ lead.name }}", NOW + timedelta(days=1), status="Attempting"))


def test_a_lead_entered_by_hand_needs_the_mandatory_fields_and_an_allowed_status():
    strict = replace(PIPELINE, required=("email",), create_in=("New",))
    entry = LeadState(0, "New", None, {"name": "Jo"})

    with pytest.raises(Refused, match="a new lead needs email"):
        create(entry, "Phone", ("Phone",), strict, ANA, NOW, "nobody")
    with pytest.raises(Refused, match="a lead is created in New, not Connected"):
        create(replace(entry, status="Connected"), "Phone", ("Phone",), strict, ANA, NOW, "nobody")
    with pytest.raises(Refused, match="a new lead needs phone"):  # the status's own required fields too
        create(replace(entry, status="Connected"), "Phone", ("Phone",), PIPELINE, ANA, NOW, "nobody")


# --- calls and meetings --------------------------------------------------------------------

CALLS = replace(PIPELINE, options={**PIPELINE.options, "Connected": StatusOptions("Connected", set_on="reply")})


def test_a_call_made_is_outreach_and_a_call_connected_a_connection():
    made, moved = log_contact(lead("New"), "call", "no-answer", NOW, "rang twice", CALLS, ANA, NOW)
    (_, connected) = log_contact(lead("New"), "call", "connected", NOW, None, CALLS, ANA, NOW)

    assert made.actor == ANA and made.events == (ContactLogged("call", "no-answer", NOW, "rang twice"),)
    assert moved.actor == AUTOMATED and moved.of(StatusChanged) == [StatusChanged("New", "Attempting")]
    assert connected.of(StatusChanged) == [StatusChanged("New", "Connected")]  # no skipping: automation's own
    (_, meeting) = log_contact(lead("Attempting"), "meeting", "completed", NOW, None, CALLS, ANA, NOW)
    assert meeting.of(StatusChanged) == [StatusChanged("Attempting", "Connected")]


def test_the_most_specific_set_on_wins():
    specific = replace(CALLS, options={**CALLS.options, "Qualified": StatusOptions("Qualified", set_on="meeting:completed")})

    changes = log_contact(lead("Attempting"), "meeting", "completed", NOW, None, specific, ANA, NOW)

    assert changes[1].of(StatusChanged)[0].new == "Qualified"


@pytest.mark.parametrize("kind, outcome, at, words", [
    ("visit", None, NOW, "log a call, a meeting or a contact, not 'visit'"),
    ("call", "booked a demo", NOW, "'booked a demo' is not an outcome of a call"),
    ("call", "connected", NOW + timedelta(hours=1), "a call connected is logged once it happened"),
    ("meeting", "completed", NOW + timedelta(days=1), "a meeting completed is logged once it happened"),
])
def test_a_call_or_meeting_that_makes_no_sense_is_refused(kind, outcome, at, words):
    with pytest.raises(Refused, match=words):
        log_contact(lead("New"), kind, outcome, at, None, CALLS, ANA, NOW)


def test_a_meeting_booked_may_be_for_a_later_day_and_a_closed_lead_takes_none():
    assert log_contact(lead("New"), "meeting", "booked", NOW + timedelta(days=4), None, CALLS, ANA, NOW)
    with pytest.raises(Refused, match="a closed lead takes no calls"):
        log_contact(lead("Disqualified"), "call", None, NOW, None, CALLS, ANA, NOW)
