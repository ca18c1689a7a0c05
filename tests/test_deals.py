"""The deal pipeline's rules (core.rules.deals): pure, no server, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from leadtap.core.rules.deals import (
    ClosedStale,
    Deal,
    DealFieldsSet,
    DealRules,
    DealWarned,
    Onboarding,
    OnboardingNeeded,
    Staleness,
    amount,
    first_limit,
    move,
    stale_step,
)
from leadtap.core.rules.lifecycle import AUTOMATED, Actor, Refused, StageChanged

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
ANA = Actor("ana@example.com", "cli")
ADMIN = Actor("boss@example.com", "cli", admin=True)
STALENESS = Staleness(max_open=120 * DAY, max_in_stage={"Discovery": 14 * DAY, "Proposal": 21 * DAY},
                      max_idle=30 * DAY, warn_before=3 * DAY)
RULES = DealRules(
    stages=("Discovery", "Proposal", "Negotiation", "Won", "Lost"), won="Won", lost="Lost",
    lost_reasons=("Price", "Went with a competitor", "Stale", "Other"), other_reason="Other",
    required={"Proposal": ("amount",), "Won": ("amount", "close_date")}, staleness=STALENESS,
    onboarding=Onboarding("onboarding"),
)


def deal(stage: str = "Discovery", age: timedelta = 5 * DAY, in_stage: timedelta = 5 * DAY,
         idle: timedelta = 1 * DAY, **kw) -> Deal:
    return Deal(7, 12, stage, NOW - age, NOW - in_stage, NOW - idle, **kw)


# --- moves -------------------------------------------------------------------------


def test_a_move_records_the_stage_and_the_fields_given_with_it():
    change = move(deal(), "Proposal", RULES, ANA, NOW, values={"amount": " 12000 "})
    assert change.lead_id == 12 and change.actor == ANA
    assert change.events == (DealFieldsSet({"amount": "12000"}), StageChanged("Discovery", "Proposal"))


@pytest.mark.parametrize("to, message", [
    ("Signed", "deal 7: 'Signed' is not a stage; expected one of Discovery, Proposal, Negotiation, Won, Lost"),
    ("Discovery", "deal 7 is already at Discovery"),
    ("Proposal", r"deal 7: Proposal needs amount \(--field NAME=VALUE\)"),
    ("Won", "deal 7: Won needs amount, close_date"),
])
def test_a_move_is_refused_with_the_rules_words(to, message):
    with pytest.raises(Refused, match=message):
        move(deal(), to, RULES, ANA, NOW)


def test_required_fields_set_before_count():
    change = move(deal(fields={"amount": "500", "close_date": "2026-12-01"}), "Won", RULES, ANA, NOW)
    assert change.of(StageChanged) == [StageChanged("Discovery", "Won")]


@pytest.mark.parametrize("values, message", [
    ({"amount": "lots"}, "amount 'lots' is not a number"),
    ({"amount": "12000", "close_date": "next week"}, "close_date 'next week' is not a date"),
])
def test_amount_and_close_date_must_read_as_a_number_and_a_date(values, message):
    with pytest.raises(Refused, match=message):
        move(deal(), "Won", RULES, ANA, NOW, values=values)


def test_lost_needs_a_reason_from_the_list_and_other_needs_a_note():
    with pytest.raises(Refused, match="Lost needs a reason: one of Price, Went with a competitor, Stale, Other"):
        move(deal(), "Lost", RULES, ANA, NOW)
    with pytest.raises(Refused, match="'Budget' is not a reason for Lost"):
        move(deal(), "Lost", RULES, ANA, NOW, reason="Budget")
    with pytest.raises(Refused, match="the reason 'Other' needs a note"):
        move(deal(), "Lost", RULES, ANA, NOW, reason="Other", note="  ")
    change = move(deal(), "Lost", RULES, ANA, NOW, reason="Other", note="moved the project to 2027")
    assert change.of(StageChanged) == [StageChanged("Discovery", "Lost", "Other", "moved the project to 2027")]


def test_a_reason_goes_with_the_lost_stage_only():
    with pytest.raises(Refused, match="a reason goes with Lost only"):
        move(deal(), "Negotiation", RULES, ANA, NOW, reason="Price")


def test_a_closed_deal_is_changed_by_admins_only():
    won = deal("Won", fields={"amount": "1", "close_date": "2026-12-01"}, has_onboarding=True)
    with pytest.raises(Refused, match="deal 7 is Won: only an admin can change a closed deal"):
        move(won, "Negotiation", RULES, ANA, NOW)
    assert move(won, "Negotiation", RULES, ADMIN, NOW).of(StageChanged) == [StageChanged("Won", "Negotiation")]


def test_won_hands_the_deal_to_onboarding_once():
    ready = {"amount": "1", "close_date": "2026-12-01"}
    assert move(deal(fields=ready), "Won", RULES, ANA, NOW).of(OnboardingNeeded) == [OnboardingNeeded()]
    again = deal("Negotiation", fields=ready, has_onboarding=True)  # won, reopened by an admin, won again
    assert move(again, "Won", RULES, ANA, NOW).of(OnboardingNeeded) == []
    assert move(deal(fields=ready), "Won", replace(RULES, onboarding=None), ANA, NOW).of(OnboardingNeeded) == []


def test_amount_reads_a_comma_as_the_decimal_sign():
    assert amount("12000,50") == 12000.5 and amount("12000") == 12000.0 and amount("n/a") is None


# --- staleness ---------------------------------------------------------------------


def test_the_first_limit_reached_decides():
    assert first_limit(deal(), STALENESS).words == "in Discovery for 14d"
    assert first_limit(deal(), STALENESS).at == NOW - 5 * DAY + 14 * DAY
    assert first_limit(deal("Negotiation", age=100 * DAY, in_stage=5 * DAY, idle=2 * DAY), STALENESS).words == \
        "open for 120d"
    assert first_limit(deal("Negotiation", age=50 * DAY, in_stage=40 * DAY, idle=28 * DAY), STALENESS).words == \
        "without activity for 30d"
    assert first_limit(deal(), Staleness()) is None


def test_a_deal_well_within_its_limits_is_left_alone():
    assert stale_step(deal(), RULES, NOW) is None


def test_warned_once_per_deadline_within_warn_before():
    near = deal(in_stage=12 * DAY)  # Discovery's 14d limit in 2 days, within the 3 days' warning
    change = stale_step(near, RULES, NOW)
    limit = change.events[0].limit
    assert change.actor == AUTOMATED and change.events == (DealWarned(limit, NOW + 3 * DAY),)  # 3 days to act
    assert limit.at == NOW + 2 * DAY and limit.words == "in Discovery for 14d"
    warned = replace(near, warned_for=limit.at, warned_at=NOW)
    assert stale_step(warned, RULES, NOW + DAY) is None  # warned; not yet due
    later = replace(warned, last_activity_at=NOW)  # activity does not move an in-stage limit
    assert stale_step(later, RULES, NOW + DAY) is None


def test_closed_lost_with_the_stale_reason_at_the_deadline_after_the_warning():
    warned = deal(in_stage=12 * DAY, warned_for=NOW + 2 * DAY, warned_at=NOW)
    assert stale_step(warned, RULES, NOW + 2 * DAY - timedelta(seconds=1)) is None
    change = stale_step(warned, RULES, NOW + 3 * DAY)
    assert change.of(StageChanged) == [StageChanged("Discovery", "Lost", "Stale",
                                                    "closed by the staleness policy: in Discovery for 14d")]
    assert [type(e) for e in change.events] == [StageChanged, ClosedStale]


def test_a_deal_found_past_its_limit_unwarned_is_warned_first_and_closed_warn_before_later():
    long_past = deal(in_stage=60 * DAY)  # e.g. the policy was just switched on
    change = stale_step(long_past, RULES, NOW)
    assert change.events[0].closes_at == NOW + 3 * DAY  # not the limit, long past: the owner gets their days
    warned = replace(long_past, warned_for=change.events[0].limit.at, warned_at=NOW)
    assert stale_step(warned, RULES, NOW + 2 * DAY) is None  # the owner has their three days
    assert stale_step(warned, RULES, NOW + 3 * DAY).of(ClosedStale)


def test_a_new_deadline_is_warned_of_again():
    warned = deal("Proposal", in_stage=20 * DAY, warned_for=NOW - 10 * DAY, warned_at=NOW - 12 * DAY)
    assert stale_step(warned, RULES, NOW).of(DealWarned)  # the old warning was for another deadline


def test_without_warn_before_a_deal_is_closed_at_its_deadline():
    rules = replace(RULES, staleness=replace(STALENESS, warn_before=timedelta(0)))
    assert stale_step(deal(in_stage=13 * DAY), rules, NOW) is None
    assert stale_step(deal(in_stage=14 * DAY), rules, NOW).of(ClosedStale)


def test_closed_deals_and_a_pipeline_without_lost_are_never_stale():
    assert stale_step(deal("Won", age=400 * DAY, in_stage=300 * DAY, idle=300 * DAY), RULES, NOW) is None
    assert stale_step(deal(in_stage=60 * DAY), replace(RULES, lost=None), NOW) is None


def test_a_deal_in_a_stage_no_longer_configured_is_left_to_a_person():
    renamed = replace(RULES, stages=("Discovery", "Proposal", "Negotiation", "Closed won", "Lost"), won="Closed won")
    assert stale_step(deal("Won", age=400 * DAY, in_stage=300 * DAY, idle=300 * DAY), renamed, NOW) is None
    assert renamed.open_stages == ("Discovery", "Proposal", "Negotiation")


# --- deals move on mail ---------------------------------------------------------------------


def test_a_deal_moves_forward_on_the_first_matching_mail_move_and_says_what_it_lacks():
    from leadtap.core.rules.deals import MailFacts, MailMove, on_mail
    from leadtap.core.rules.lifecycle import AutomationBlocked

    rules = replace(RULES, moves=(MailMove("outreach", "Proposal", attachment="*proposal*|*quote*"),
                                  MailMove("mail", "Won", "*@docusign.net", "Completed*")))
    proposal = MailFacts("ana@example.com", "Your quote", ("ACME Quote 2026.PDF",))
    signed = MailFacts("dse@docusign.net", "Completed: Please DocuSign: Proposal.pdf")

    moved = on_mail(deal("Discovery", fields={"amount": "900"}), "outreach", proposal, rules, NOW)
    assert moved.actor == AUTOMATED and moved.of(StageChanged) == [StageChanged("Discovery", "Proposal")]
    assert on_mail(deal("Discovery", fields={"amount": "900"}), "outreach", MailFacts("ana@example.com", "Hi", ()), rules,
                   NOW) is None  # no attachment named so
    assert on_mail(deal("Negotiation", fields={"amount": "900"}), "outreach", proposal, rules, NOW) is None  # never back
    (blocked,) = on_mail(deal("Discovery"), "outreach", proposal, rules, NOW).events
    assert blocked == AutomationBlocked("outreach", "Proposal", ("amount",), deal=True)
    assert blocked.summary == "outreach sent; deal not moved to Proposal: needs amount"
    won = on_mail(deal("Proposal", fields={"amount": "900", "close_date": "2026-12-31"}), "mail", signed, rules, NOW)
    assert won.of(StageChanged)[0].new == "Won"
    assert on_mail(deal("Won", fields={"amount": "900"}), "mail", signed, rules, NOW) is None  # a closed deal stays
