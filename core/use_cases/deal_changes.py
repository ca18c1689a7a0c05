"""Deals change: the use cases behind ``opportunities set`` and the
staleness sweep, each inside a caller's transaction.

Each locks the lead, then its opportunity (the order every change takes),
asks ``core.rules.deals`` whether the change is allowed and what it brings, and
records it: the opportunity's new stage and fields, an activity per event,
the onboarding hand-off with its tasks, the emails owed (``core.store.notifications``).
A stage with a ``set_on = "stage:<name>"`` status then moves the lead
(``core.rules.lifecycle.on_activity``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from leadtap.core.use_cases import changes
from leadtap.core.rules import deals
from leadtap.core.rules import lifecycle
from leadtap.core.store import notifications
from leadtap.core.use_cases.changes import LeadRules, add_activity
from leadtap.core.store.db import Lead, OnboardingRecord, Opportunity, Task
from leadtap.core.rules.reply_grammar import pick
from leadtap.core.rules.deals import Deal
from leadtap.core.rules.lifecycle import Actor, Change, Refused
from leadtap.core.store.services import clip, lock_rotation


def load_deal(session: Session, opportunity_id: int) -> tuple[Lead, Opportunity]:
    lead_id = session.scalar(select(Opportunity.lead_id).where(Opportunity.id == opportunity_id))
    if lead_id is None:
        raise Refused(f"no opportunity with id {opportunity_id}")
    lead = changes.load_lead(session, lead_id)
    opportunity = session.scalars(select(Opportunity).where(Opportunity.id == opportunity_id).with_for_update()).one()
    return lead, opportunity


def as_deal(lead: Lead, opportunity: Opportunity, has_onboarding: bool = False) -> Deal:
    """What the rules need of a deal; its last activity is its lead's (mail, notes, changes)."""
    activity = max(t for t in (lead.last_activity_at, opportunity.stage_changed_at, opportunity.created_at) if t)
    return Deal(opportunity.id, lead.id, opportunity.stage, opportunity.created_at,
                opportunity.stage_changed_at or opportunity.created_at, activity, dict(opportunity.fields or {}),
                has_onboarding, opportunity.warned_for, opportunity.warned_at)


def deal_of(session: Session, lead: Lead, opportunity: Opportunity) -> Deal:
    onboarded = session.scalar(select(OnboardingRecord.id).where(OnboardingRecord.opportunity_id == opportunity.id,
                                                                 OnboardingRecord.state != "cancelled"))
    return as_deal(lead, opportunity, onboarded is not None)


# --- the use cases -----------------------------------------------------------


def set_stage(session: Session, rules: LeadRules, opportunity_id: int, stage: str, actor: Actor, now: datetime,
              reason: str | None = None, note: str | None = None, values: dict | None = None) -> list[Change]:
    """The deal to ``stage``, then the move automation makes for ``stage:<stage>``."""
    stage = pick(stage, rules.deals.stages)  # the same by email and on the command line
    reason = pick(reason, rules.deals.lost_reasons) if reason else reason
    onboarding = rules.deals.onboarding
    if onboarding and stage == rules.deals.won:
        lock_rotation(session, onboarding.role)  # the rotation before the lead: ingest's order, never a deadlock
    lead, opportunity = load_deal(session, opportunity_id)
    change = deals.move(deal_of(session, lead, opportunity), stage, rules.deals, actor, now, reason, note, values)
    changes.record(session, rules, lead, change, RECORDERS)
    return [change, *follow_stage(session, rules, lead, change, now)]


def follow_stage(session: Session, rules: LeadRules, lead: Lead, change: Change, now: datetime) -> list[Change]:
    """The move automation makes when the deal enters a stage; a lost deal's
    reason and note go with it (a lead closed with its deal says why)."""
    (entered,) = change.of(deals.StageChanged)[-1:] or (None,)
    if entered is None:
        return []
    moved = lifecycle.on_activity(changes.state_of(session, lead), f"stage:{entered.new}", rules.pipeline_of(lead), now,
                                  entered.reason, entered.note)
    if moved is None:
        return []
    changes.record(session, rules, lead, moved)
    return [moved]


def stale_candidates(session: Session, rules: LeadRules, now: datetime) -> list[int]:
    """Open deals past (or within ``warn_before`` of) a staleness limit: a
    coarse, indexed select; ``stale_step`` decides each one."""
    staleness = rules.deals.staleness
    if not staleness.enabled or rules.deals.lost is None:
        return []
    horizon = now + staleness.warn_before
    reached = []
    if staleness.max_open:
        reached.append(Opportunity.created_at <= horizon - staleness.max_open)
    for stage, limit in staleness.max_in_stage.items():
        reached.append(and_(Opportunity.stage == stage, Opportunity.stage_changed_at <= horizon - limit))
    if staleness.max_idle:
        idle_since = horizon - staleness.max_idle
        reached.append(and_(Opportunity.created_at <= idle_since, Opportunity.stage_changed_at <= idle_since,
                            or_(Lead.last_activity_at.is_(None), Lead.last_activity_at <= idle_since)))
    # A deal warned less than warn_before ago, with no activity since, has nothing to do yet: left out,
    # so warned deals are not read again sweep after sweep (a stage change clears the warning).
    worth_a_look = or_(Opportunity.warned_at.is_(None), Opportunity.warned_at <= now - staleness.warn_before,
                       Lead.last_activity_at > Opportunity.warned_at)
    # NOT IN the closed stages, not IN the open ones: SQLite plans it well without statistics (0.04 s
    # against 0.3 s over 100,000 deals); a stage no longer configured is left alone by ``stale_step``.
    query = (select(Opportunity.id).join(Lead, Lead.id == Opportunity.lead_id)
             .where(Opportunity.stage.not_in(rules.deals.closed), or_(*reached), worth_a_look)
             .order_by(Opportunity.id))
    return list(session.scalars(query))


def stale_step(session: Session, rules: LeadRules, opportunity_id: int, now: datetime) -> list[Change]:
    """Warn the deal's owner or close it lost, as ``core.rules.deals.stale_step``
    says — read again under the lead's lock, so two sweeps never warn or
    close twice. A warning is not activity: it does not reset the deal's idle time."""
    lead, opportunity = load_deal(session, opportunity_id)
    change = deals.stale_step(deal_of(session, lead, opportunity), rules.deals, now)
    if change is None:
        return []
    warning = bool(change.of(deals.DealWarned))
    changes.record(session, rules, lead, change, RECORDERS, activity=not warning)
    return [change] if warning else [change, *follow_stage(session, rules, lead, change, now)]


def warning_moot(lead: Lead, opportunity: Opportunity, rules: deals.DealRules) -> str | None:
    """Why a staleness warning owed is no longer true (the deal closed, or
    activity moved its deadline since), or None."""
    if opportunity.stage not in rules.open_stages or opportunity.warned_for is None:
        return "the deal moved on since the warning"
    limit = deals.first_limit(as_deal(lead, opportunity), rules.staleness)
    if limit is None or limit.at != opportunity.warned_for:
        return "the deal's deadline moved since the warning"
    return None


# --- recording what happened -------------------------------------------------


def opportunity_of(session: Session, lead: Lead) -> Opportunity:
    return session.scalars(select(Opportunity).where(Opportunity.lead_id == lead.id)).one()


def stage_changed(session, rules: LeadRules, lead: Lead, change: Change, event: lifecycle.StageChanged) -> None:
    opportunity = opportunity_of(session, lead)
    if event.old == rules.deals.won:  # no longer won: its onboarding and its open tasks are cancelled
        cancel_onboarding(session, opportunity, change)
    opportunity.stage, opportunity.stage_changed_at = event.new, change.at
    opportunity.closed_at = None if rules.deals.is_open(event.new) else change.at
    opportunity.lost_reason = event.reason if event.new == rules.deals.lost else None
    opportunity.warned_for = opportunity.warned_at = None  # a new stage: any warning is moot
    if lead.blocked and " deal not moved to " in lead.blocked:
        lead.blocked = None  # the deal moved since: what automation waited for is moot
    details = {"from": event.old, "to": event.new, "reason": event.reason, "note": event.note,
               "opportunity": opportunity.id}
    add_activity(session, lead.id, "stage", f"{event.old} → {event.new}", change.actor, change.at,
                 {k: v for k, v in details.items() if v is not None})


def cancel_onboarding(session: Session, opportunity: Opportunity, change: Change) -> None:
    record = session.scalars(select(OnboardingRecord).where(OnboardingRecord.opportunity_id == opportunity.id)
                             ).one_or_none()
    if record is None or record.state != "open":  # a finished onboarding stays finished
        return
    record.state = "cancelled"
    session.execute(update(Task).where(Task.onboarding_id == record.id, Task.state == "open")
                    .values(state="cancelled", closed_at=change.at, closed_by=change.actor.who))


def deal_fields_set(session, rules, lead: Lead, change: Change, event: deals.DealFieldsSet) -> None:
    opportunity = opportunity_of(session, lead)
    opportunity.fields = {**(opportunity.fields or {}), **{clip(k, 200): clip(v) for k, v in event.values.items()}}
    add_activity(session, lead.id, "deal_fields", ", ".join(sorted(event.values)), change.actor, change.at,
                 {"values": dict(event.values), "opportunity": opportunity.id})


def onboarding_needed(session, rules: LeadRules, lead: Lead, change: Change, event: deals.OnboardingNeeded) -> None:
    """The hand-off: the onboarding role's next owner in turn (none active:
    made unassigned, and said), its tasks, the email owed to them."""
    settings = rules.deals.onboarding
    opportunity = opportunity_of(session, lead)
    try:
        owner = changes.next_owner(session, settings.role, None, change.at)
    except Refused:
        owner = None
    record = session.scalars(select(OnboardingRecord).where(OnboardingRecord.opportunity_id == opportunity.id)
                             ).one_or_none()
    if record is None:
        record = OnboardingRecord(opportunity_id=opportunity.id, lead_id=lead.id, created_at=change.at)
        session.add(record)
    # won again after it was reopened: the same record (one per deal), handed out anew
    record.owner_id, record.state, record.done_at = owner.id if owner else None, "open", None
    session.flush()
    for task in settings.tasks:
        title = rules.render_title(task.title, changes.lead_fields(lead))
        session.add(Task(lead_id=lead.id, owner_id=record.owner_id, title=clip(title, 500), due_at=change.at + task.due,
                         state="open", created_at=change.at, onboarding_id=record.id))
    if owner is not None and rules.mail_owners:
        notifications.owe(session, lead.id, owner.email, notifications.ONBOARDING, change.at)
    who = owner.email if owner else f"nobody (no active owner holds the role {settings.role!r})"
    add_activity(session, lead.id, "onboarding", f"onboarding for {who}", change.actor, change.at,
                 {"onboarding": record.id, "owner": owner.email if owner else None})


def deal_warned(session, rules: LeadRules, lead: Lead, change: Change, event: deals.DealWarned) -> None:
    opportunity = opportunity_of(session, lead)
    opportunity.warned_for, opportunity.warned_at = event.limit.at, change.at
    owner = tell_owner(session, rules, lead, notifications.DEAL_STALE, change.at)
    add_activity(session, lead.id, "deal_warned", f"closes {event.closes_at:%Y-%m-%d %H:%M} UTC: {event.limit.words}",
                 change.actor, change.at, {"closes_at": event.closes_at.isoformat(), "told": owner})


def closed_stale(session, rules: LeadRules, lead: Lead, change: Change, event: deals.ClosedStale) -> None:
    tell_owner(session, rules, lead, notifications.DEAL_CLOSED, change.at)


def tell_owner(session: Session, rules: LeadRules, lead: Lead, kind: str, at: datetime) -> str | None:
    """The lead's owner is owed the ``kind`` email (when leadtap sends mail); returns who, if anyone."""
    owner = changes.owner_email(session, lead)
    if owner and rules.mail_owners:
        notifications.owe(session, lead.id, owner, kind, at)
    return owner


RECORDERS = {
    lifecycle.StageChanged: stage_changed,
    lifecycle.StepsOwed: changes.steps_owed,
    deals.DealFieldsSet: deal_fields_set,
    deals.OnboardingNeeded: onboarding_needed,
    deals.DealWarned: deal_warned,
    deals.ClosedStale: closed_stale,
}
