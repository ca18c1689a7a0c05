"""Mail on existing leads — outreach, the contact's replies, a service's
mail about the contact — and what automation makes of it, in the ingest
batch's transaction: the activity times, the end of a snooze, the lead's
move (``core.rules.lifecycle.on_activity``), and the deal's
(``core.rules.deals.on_mail``: ``[[opportunities.moves]]``), which its lead's
status may follow."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from leadtap.core.rules import deals, lifecycle
from leadtap.core.rules.deals import MailFacts
from leadtap.core.rules.lifecycle import Change
from leadtap.core.store.db import Lead, Opportunity
from leadtap.core.use_cases.changes import LeadRules, load_lead, record, state_of
from leadtap.core.use_cases.deal_changes import RECORDERS, deal_of, follow_stage


def record_mail(session: Session, rules: LeadRules, touched: dict[int, list[tuple[str, MailFacts]]],
                now: datetime) -> list[Change]:
    moves = []
    for lead_id in sorted(touched):
        lead = load_lead(session, lead_id)
        lead.last_activity_at, lead.snoozed_until = now, None
        for trigger, facts in touched[lead_id]:
            if trigger == "outreach":
                lead.last_outreach_at = now
            change = lifecycle.on_activity(state_of(session, lead), trigger, rules.pipeline_of(lead), now)
            if change is not None:
                record(session, rules, lead, change)
                moves.append(change)
            moves += deal_on_mail(session, rules, lead, trigger, facts, now)
    session.flush()
    return moves


def deal_on_mail(session: Session, rules: LeadRules, lead: Lead, trigger: str, facts: MailFacts,
                 now: datetime) -> list[Change]:
    """The lead's open deal moves as the first matching move says; its status follows the stage."""
    if not rules.deals.moves:
        return []
    opportunity = session.scalars(select(Opportunity).where(Opportunity.lead_id == lead.id)).one_or_none()
    if opportunity is None:
        return []
    change = deals.on_mail(deal_of(session, lead, opportunity), trigger, facts, rules.deals, now)
    if change is None:
        return []
    if change.of(lifecycle.AutomationBlocked):
        record(session, rules, lead, change)
        return [change]
    record(session, rules, lead, change, RECORDERS)
    return [change, *follow_stage(session, rules, lead, change, now)]
