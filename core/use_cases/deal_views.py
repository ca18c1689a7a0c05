"""Read models of the deal pipeline for the command line and the emails:
deals with their staleness, and onboardings with their tasks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leadtap.core.rules import deals
from leadtap.core.use_cases.changes import LeadRules
from leadtap.core.use_cases.deal_changes import as_deal, stale_candidates
from leadtap.core.store.db import Lead, OnboardingRecord, Opportunity, Owner, Task
from leadtap.core.use_cases.listing import deal_dict, iso

DEAL_COLUMNS = ("id", "lead_id", "title", "stage", "amount", "owner", "stage_changed_at", "closes_at")
ONBOARDING_COLUMNS = ("id", "opportunity_id", "lead_id", "title", "owner", "state", "open_tasks", "next_due")


def list_deals(session: Session, rules: LeadRules, now: datetime, stage: str | None = None,
               owner: str | None = None, stale: bool = False) -> list[dict]:
    """Deals with their owner and, when open, the staleness limit they reach
    first (``closes_at``, ``limit``); ``stale``: only those past or within
    ``warn_before`` of it."""
    query = (select(Opportunity, Lead, Owner).join(Lead, Lead.id == Opportunity.lead_id)
             .outerjoin(Owner, Owner.id == Lead.owner_id).order_by(Opportunity.id))
    if stage:
        query = query.where(Opportunity.stage == stage)
    if owner:
        query = query.where(Owner.email == owner.strip().lower())
    if stale:
        query = query.where(Opportunity.id.in_(stale_candidates(session, rules, now)))
    rows = [deal_row(opportunity, lead, who, rules.deals) for opportunity, lead, who in session.execute(query)]
    if stale:
        warn_before = rules.deals.staleness.warn_before
        rows = [r for r in rows if r["closes_at"] and datetime.fromisoformat(r["closes_at"]) - warn_before <= now]
    return rows


def deal_row(opportunity: Opportunity, lead: Lead, owner: Owner | None, rules: deals.DealRules) -> dict:
    deal = as_deal(lead, opportunity)
    limit = (deals.first_limit(deal, rules.staleness)
             if opportunity.stage in rules.open_stages and rules.staleness.enabled else None)
    return {**deal_dict(opportunity), "lead": lead.name or lead.email, "owner": owner.email if owner else None,
            "closes_at": iso(deals.closing_time(deal, limit, rules.staleness)) if limit else None,
            "limit": limit.words if limit else None}


def list_onboardings(session: Session, owner: str | None = None, state: str | None = None) -> list[dict]:
    open_tasks = (select(Task.onboarding_id, func.count(Task.id).label("open"), func.min(Task.due_at).label("due"))
                  .where(Task.state == "open", Task.onboarding_id.is_not(None))
                  .group_by(Task.onboarding_id).subquery())
    query = (select(OnboardingRecord, Opportunity, Owner, open_tasks.c.open, open_tasks.c.due)
             .join(Opportunity, Opportunity.id == OnboardingRecord.opportunity_id)
             .outerjoin(Owner, Owner.id == OnboardingRecord.owner_id)
             .outerjoin(open_tasks, open_tasks.c.onboarding_id == OnboardingRecord.id)
             .order_by(OnboardingRecord.id))
    if owner:
        query = query.where(Owner.email == owner.strip().lower())
    if state:
        query = query.where(OnboardingRecord.state == state)
    return [{"id": record.id, "opportunity_id": deal.id, "lead_id": record.lead_id, "title": deal.title,
             "owner": who.email if who else None, "state": record.state, "open_tasks": count or 0,
             "next_due": iso(due), "created_at": iso(record.created_at), "done_at": iso(record.done_at)}
            for record, deal, who, count, due in session.execute(query)]


def onboarding_view(session: Session, record: OnboardingRecord) -> dict:
    """An onboarding as its email shows it: its tasks in due order."""
    tasks = session.scalars(select(Task).where(Task.onboarding_id == record.id).order_by(Task.due_at, Task.id))
    return {"id": record.id, "state": record.state, "created_at": iso(record.created_at),
            "tasks": [{"id": t.id, "title": t.title, "due_at": iso(t.due_at), "state": t.state} for t in tasks]}
