"""People change leads: the use cases behind ``leads set``, ``leads assign``,
``leads note``, ``leads snooze`` and ``tasks done``, each inside a caller's
transaction.

Each loads the lead, asks ``core.rules.lifecycle`` whether the change is allowed
(it decides; this module only loads and writes), then records what happened:
the lead's new state, one activity row per event, tasks, an opportunity, a
follow-up lead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from leadtap.core.rules import deals, lifecycle
from leadtap.core.rules.reply_grammar import pick
from leadtap.core.rules.free_mail import domain_of
from leadtap.core.rules.words import plural
from leadtap.core.config.load import Config
from leadtap.core.store.db import Activity, Lead, OnboardingRecord, Opportunity, Owner, Rotation, Task, WorkflowStep
from leadtap.core.rules.deals import DealRules
from leadtap.core.rules.lifecycle import Actor, Change, LeadState, Pipeline, Refused
from leadtap.core.rules.model import next_in_turn, opportunity_title, rotation_pool
from leadtap.core.store import notifications
from leadtap.core.store.reminders import stay_start
from leadtap.core.store.services import clip, lock_rotation
from leadtap.core.store.tables import of_pipeline
from leadtap.core.use_cases import webhooks
from leadtap.core.use_cases.workflows import owe_steps

LEAD_FIELDS = {"name": 300, "email": 320, "phone": 100, "company": 300}  # and their column lengths
# Renders a task title template with the lead (Jinja2, in the adapter).
RenderTitle = Callable[[str, dict], str]


@dataclass(frozen=True)
class LeadRules:
    """What a change needs besides the lead: the rules, the rotation's role,
    the first opportunity stage, and how task titles are rendered."""

    pipeline: Pipeline
    role: str
    deals: DealRules  # the opportunity stages; a new opportunity starts at the first
    render_title: RenderTitle
    notify_owner: bool = False  # a lead's new owner is owed the new-lead email
    mail_owners: bool = False  # there is an [smtp] table: deal warnings and hand-offs are emailed
    sources: tuple[str, ...] = ("Email",)  # a lead entered by hand names one; the first is the default
    assign: bool = True  # a lead entered by hand for no one goes to the rotation
    auto_opportunity: bool = True  # a lead entered by hand gets its deal, as mail's do
    company_owner: bool = False  # a new contact at a company with an open lead goes to its owner
    free_mail: frozenset[str] = frozenset()  # added to core.rules.free_mail's list
    types: tuple[str, ...] = ()  # [leads] types; a new lead's is default_type
    default_type: str | None = None
    pipelines: Mapping[str, Pipeline] = field(default_factory=dict)  # every pipeline by name (``pipeline``: the default)
    config: Config | None = None  # what the pipelines came from (their names, in any case)
    webhooks: tuple = ()  # [[webhooks]]: the events a change is are owed to them

    def pipeline_of(self, lead) -> Pipeline:
        """A lead's pipeline (its rules and statuses): its ``pipeline`` column's, else the default one."""
        key = lead.pipeline if lead is not None else None
        return self.pipelines.get(key, self.pipeline) if key is not None else self.pipeline

    @property
    def closed(self) -> tuple[str, ...]:
        """The closed statuses of every pipeline (a status is closed in all of them or in none)."""
        return self.config.closed if self.config else self.pipeline.closed

    def pipeline_named(self, name: str | None) -> Pipeline:
        """``--pipeline NAME`` (any case), or the default one; Refused with the names."""
        if name is None:
            return self.pipeline
        found = self.config.pipeline_called(name) if self.config else None
        if found is None:
            names = list(self.pipelines or [self.pipeline.name])
            raise Refused(f"unknown pipeline {name!r}; expected one of {', '.join(names)}")
        return found

    @classmethod
    def for_config(cls, config: Config, render_title: RenderTitle = lambda title, _lead: title) -> "LeadRules":
        """The rules of ``config``; task titles kept as written unless a renderer is given."""
        leads = config.leads
        sources = (leads.default_source, *(s for s in leads.sources if s != leads.default_source))
        return cls(config.pipeline, config.assignment.role, config.opportunities.deals, render_title,
                   config.notifications.enabled, config.smtp is not None, sources, config.assignment.enabled,
                   config.opportunities.auto_create, config.assignment.company_owner,
                   frozenset(config.assignment.free_mail), leads.types, leads.default_type, config.pipelines, config,
                   config.webhooks)

    @property
    def first_stage(self) -> str:
        return self.deals.first


def load_lead(session: Session, lead_id: int) -> Lead:
    lead = session.scalars(select(Lead).where(Lead.id == lead_id).with_for_update()).one_or_none()
    if lead is None:
        raise Refused(f"no lead with id {lead_id}")
    return lead


def state_of(session: Session, lead: Lead) -> LeadState:
    owner = session.get(Owner, lead.owner_id) if lead.owner_id else None
    has_opportunity = session.scalar(select(Opportunity.id).where(Opportunity.lead_id == lead.id)) is not None
    fields = {"name": lead.name, "email": lead.email, "phone": lead.phone, "company": lead.company,
              **(lead.fields or {})}
    return LeadState(lead.id, lead.status, owner.email if owner else None, fields, has_opportunity,
                     bool(lead.automation_stopped), lead.last_outreach_at is not None, lead.snoozed_until,
                     lead.blocked, lead.source, min(lead.received_at, lead.created_at), lead.type)


def in_pipeline(actor: Actor, pipeline: Pipeline) -> Actor:
    """An owner acting on a lead of ``pipeline``: an admin there if its ``admins`` name them."""
    if actor.who in (lifecycle.CLI, lifecycle.AUTOMATION):
        return actor
    return replace(actor, admin=actor.who in pipeline.admins)


def acting(session: Session, who: str | None, pipeline: Pipeline, how: str = "cli") -> Actor:
    """``--by``: an owner's email (known, active or not), else the command line."""
    actor = lifecycle.actor_for(who, pipeline, how)
    if who is not None and session.scalar(select(Owner.id).where(Owner.email == actor.who)) is None:
        raise Refused(f"{who!r} is not an owner: --by names an owner's email")
    return actor


# --- the use cases -----------------------------------------------------------


def set_status(session: Session, rules: LeadRules, lead_id: int, status: str, actor: Actor, now: datetime,
               reason: str | None = None, note: str | None = None, values: dict | None = None) -> Change:
    lead = load_lead(session, lead_id)
    pipeline = rules.pipeline_of(lead)
    status = pick(status, pipeline.statuses)  # the same by email and on the command line
    reason = pick(reason, pipeline.disqualify_reasons) if reason else reason
    change = lifecycle.move(state_of(session, lead), status, pipeline, in_pipeline(actor, pipeline), now, reason,
                            note, values)
    record(session, rules, lead, change)
    return change


def edit(session: Session, rules: LeadRules, lead_id: int, values: dict, source: str | None, actor: Actor,
         now: datetime, lead_type: str | None = None) -> Change:
    """A lead's fields or source, without a status move. A new email is the
    lead's contact, which mail is matched on: never another open lead's, never
    an owner's (the rotation's lock first, as ingest and ``leads add`` take it)."""
    lock_rotation(session, rules.role)
    lead = load_lead(session, lead_id)
    source = pick(source, rules.sources) if source else source
    lead_type = pick(lead_type, rules.types) if lead_type else lead_type
    pipeline = rules.pipeline_of(lead)
    change = lifecycle.edit(state_of(session, lead), values, source, rules.sources, pipeline,
                            in_pipeline(actor, pipeline), now, lead_type, rules.types)
    for event in change.of(lifecycle.FieldsSet):
        if event.values.get("email"):
            check_contact(session, rules, lead, event.values["email"])
    record(session, rules, lead, change)
    return change


def check_contact(session: Session, rules: LeadRules, lead: Lead, email: str) -> None:
    contact = email.strip().lower()
    if session.scalar(select(Owner.id).where(Owner.email == contact)) is not None:
        raise Refused(f"lead {lead.id}: {email} is an owner's address, not a contact's")
    if open_lead_of(session, rules, contact, besides=lead.id) is not None:
        raise Refused(f"lead {lead.id}: {email} is already the contact of another open lead")


def open_lead_of(session: Session, rules: LeadRules, contact: str, besides: int | None = None) -> Lead | None:
    """The contact's latest open lead (other than ``besides``)."""
    query = select(Lead).where(Lead.contact == contact, Lead.status.not_in(rules.closed))
    if besides is not None:
        query = query.where(Lead.id != besides)
    return session.scalars(query.order_by(Lead.id.desc()).limit(1)).first()


def log_contact(session: Session, rules: LeadRules, lead_id: int, kind: str, outcome: str | None, at: datetime,
                note: str | None, actor: Actor, now: datetime) -> list[Change]:
    """A call or meeting on the lead, and the move automation makes on it."""
    lead = load_lead(session, lead_id)
    pipeline = rules.pipeline_of(lead)
    done = lifecycle.log_contact(state_of(session, lead), kind, outcome, at, note, pipeline,
                                 in_pipeline(actor, pipeline), now)
    for change in done:
        record(session, rules, lead, change)
    return done


def rename_status(session: Session, rules: LeadRules, old: str, new: str, actor: Actor, now: datetime,
                  dry_run: bool = False, pipeline: Pipeline | None = None) -> int:
    """A status renamed in the config: its leads (and the tasks it made) take
    the new name. Not a move — each stay goes on — but said on each lead.
    ``pipeline``: whose leads (default: the default pipeline's)."""
    pipeline = pipeline or rules.pipeline
    new = pick(new, pipeline.statuses)
    if new not in pipeline.statuses:
        raise Refused(f"unknown status {new!r}; expected one of {', '.join(pipeline.statuses)}")
    if old in pipeline.statuses:
        raise Refused(f"{old!r} is still a configured status: a rename moves the leads of a status no longer "
                      f"in [leads] statuses (to move leads between statuses: leads set)")
    if not pipeline.is_open(new):
        raise Refused(f"{new!r} is closed: a rename would close the leads without what closing does (a reason, "
                      f"their tasks, their deals); move them with leads set")
    leads = session.scalars(select(Lead).where(Lead.status == old, of_pipeline(pipeline.key)).order_by(Lead.id)
                            .with_for_update()).all()
    if not leads:
        raise Refused(f"no lead is in {old!r}")
    if dry_run:
        return len(leads)
    for lead in leads:
        lead.status = new
        add_activity(session, lead.id, "status", f"{old} → {new} (renamed)", actor, now,
                     {"from": old, "to": new, "renamed": True})
    ids = [lead.id for lead in leads]
    session.execute(update(Task).where(Task.lead_id.in_(ids), Task.status == old).values(status=new))
    # the stay goes on: so do its workflow's steps owed (they run if the new status has the same ones)
    session.execute(update(WorkflowStep).where(WorkflowStep.lead_id.in_(ids), WorkflowStep.deal.is_(False),
                                               WorkflowStep.status == old).values(status=new))
    return len(leads)


def rename_pipeline(session: Session, rules: LeadRules, old: str, new: str, actor: Actor, now: datetime,
                    dry_run: bool = False) -> tuple[int, Pipeline]:
    """A pipeline renamed (or removed, or made the default) in the config: the
    leads still under the old name go to a configured one, their statuses as
    they are (``check`` then lists any the new one has not). Not a move."""
    pipeline = rules.pipeline_named(new)
    keys = [p.key for p in (rules.pipelines.values() or [rules.pipeline]) if p.key is not None]
    if old in keys:
        raise Refused(f"{old!r} is still a configured pipeline: a rename moves the leads of a pipeline no longer "
                      f"in [[pipelines]]")
    leads = session.scalars(select(Lead).where(Lead.pipeline == old).order_by(Lead.id).with_for_update()).all()
    if not leads:
        raise Refused(f"no lead is in a pipeline named {old!r}")
    if not dry_run:
        for lead in leads:
            lead.pipeline = pipeline.key
            add_activity(session, lead.id, "pipeline", f"{old} → {pipeline.name} (renamed)", actor, now,
                         {"from": old, "to": pipeline.name, "renamed": True})
    return len(leads), pipeline


def reassign(session: Session, rules: LeadRules, lead_id: int, to: str, actor: Actor, now: datetime) -> Change:
    """``to``: an active owner's email, or ``next`` for the rotation's next owner (taking a turn)."""
    if to == "next":
        lock_rotation(session, rules.role)  # ingest's order: the rotation, then the lead — never a deadlock
    return give(session, rules, load_lead(session, lead_id), to, actor, now)


def reassign_stale(session: Session, rules: LeadRules, lead_id: int, status: str, stay: datetime,
                   now: datetime) -> Change | None:
    """The reminder ladder's last rung: the lead goes to the rotation's next
    owner — unless it left that status or got an owner since (None)."""
    lock_rotation(session, rules.role)
    lead = load_lead(session, lead_id)
    if lead.status != status or stay_start(lead) != stay:
        return None
    old = session.get(Owner, lead.owner_id) if lead.owner_id else None
    change = give(session, rules, lead, "next", lifecycle.AUTOMATED, now)
    if old is not None:  # told by the outbox, so that a failed send is tried again
        notifications.owe(session, lead.id, old.email, notifications.REASSIGNED, now)
    return change


def give(session: Session, rules: LeadRules, lead: Lead, to: str, actor: Actor, now: datetime) -> Change:
    state = state_of(session, lead)
    owner = next_owner(session, rules.role, state.owner, now) if to == "next" else active_owner(session, to)
    pipeline = rules.pipeline_of(lead)
    change = lifecycle.assign(state, owner.email, pipeline, in_pipeline(actor, pipeline), now)
    record(session, rules, lead, change)
    return change


def note(session: Session, rules: LeadRules, lead_id: int, text: str, actor: Actor, now: datetime) -> Change:
    lead = load_lead(session, lead_id)
    change = lifecycle.add_note(state_of(session, lead), text, actor, now)
    record(session, rules, lead, change)
    return change


def snooze(session: Session, rules: LeadRules, lead_id: int, until: datetime, actor: Actor, now: datetime) -> Change:
    lead = load_lead(session, lead_id)
    change = lifecycle.snooze(state_of(session, lead), until, rules.pipeline_of(lead), actor, now)
    record(session, rules, lead, change)
    return change


def add_task(session: Session, rules: LeadRules, lead_id: int, title: str, due_at: datetime, actor: Actor,
             now: datetime) -> Change:
    lead = load_lead(session, lead_id)
    change = lifecycle.add_task(state_of(session, lead), title, due_at, rules.pipeline_of(lead), actor, now)
    record(session, rules, lead, change)
    return change


def finish_task(session: Session, task_id: int, actor: Actor, now: datetime) -> Task:
    lead_id = session.scalar(select(Task.lead_id).where(Task.id == task_id))
    if lead_id is None:
        raise Refused(f"no task with id {task_id}")
    load_lead(session, lead_id)  # the lead first, then its task: the order every change takes
    task = session.scalars(select(Task).where(Task.id == task_id).with_for_update()).one()
    if task.state != "open":
        raise Refused(f"task {task_id} is already {task.state}")
    task.state, task.closed_at, task.closed_by = "done", now, actor.who
    session.get(Lead, lead_id).last_activity_at = now  # activity: it keeps a deal from going idle
    add_activity(session, task.lead_id, "task_done", task.title, actor, now, {"task": task.id})
    if task.onboarding_id is not None:
        onboarding_done(session, task.onboarding_id, now)
    return task


def onboarding_done(session: Session, onboarding_id: int, now: datetime) -> None:
    """An onboarding whose last open task is done is done."""
    still_open = session.scalar(select(Task.id).where(Task.onboarding_id == onboarding_id, Task.state == "open")
                                .limit(1))
    if still_open is None:
        record = session.get(OnboardingRecord, onboarding_id)
        record.state, record.done_at = "done", now


def active_owner(session: Session, email: str) -> Owner:
    owner = session.scalars(select(Owner).where(Owner.email == email.strip().lower())).one_or_none()
    if owner is None or not owner.active:
        raise Refused(f"{email!r} is not an active owner")
    return owner


def next_owner(session: Session, role: str, exclude: str | None, now: datetime) -> Owner:
    """The rotation's next active owner of ``role``, not away (a turn is taken)."""
    rotation: Rotation = lock_rotation(session, role)
    owners = {o.id: o for o in session.scalars(select(Owner))}
    pool = rotation_pool(owners.values(), role, now, exclude)
    last = owners.get(rotation.last_owner_id) if rotation.last_owner_id else None
    chosen = next_in_turn(pool, last.position if last else None)
    if chosen is None:
        other = "other " if exclude else ""
        raise Refused(f"no {other}active owner holds the role {role!r} (or all are away)")
    rotation.last_owner_id, rotation.turns = chosen.id, rotation.turns + 1
    return owners[chosen.id]


# --- recording what happened -------------------------------------------------


def record(session: Session, rules: LeadRules, lead: Lead, change: Change, recorders: dict | None = None,
           activity: bool = True) -> None:
    """The lead's new state and one activity per event; ``recorders`` for
    other events than the lead's (``core.use_cases.deal_changes``). A change that is
    not ``activity`` (a staleness warning) leaves the lead's activity time and snooze."""
    depth = session.info.get("recording", 0)
    session.info["recording"] = depth + 1  # a change recorded inside another (a deal lost with its lead)
    try:
        for event in change.events:
            (recorders or RECORDERS)[type(event)](session, rules, lead, change, event)
        if activity:
            lead.last_activity_at = change.at
            if not change.of(lifecycle.Snoozed):
                lead.snoozed_until = None  # any activity ends a snooze
        session.flush()
        if rules.webhooks:  # the cause's events before the effects': written when the outermost change is
            webhooks.owe_change(session, rules.webhooks, rules.deals, lead, change, depth)
    except BaseException:
        if depth == 0:  # refused, rolled back: nothing it owed is owed
            session.info.pop("webhooks_owed", None)
        raise
    finally:
        session.info["recording"] = depth


def lead_fields(lead: Lead) -> dict:
    """The lead as a task title template sees it."""
    return {"id": lead.id, "name": lead.name, "email": lead.email, "phone": lead.phone, "company": lead.company,
            "status": lead.status, "pipeline": lead.pipeline}


def owner_email(session: Session, lead: Lead) -> str | None:
    owner = session.get(Owner, lead.owner_id) if lead.owner_id else None
    return owner.email if owner else None


def add_activity(session: Session, lead_id: int, kind: str, summary: str, actor: Actor, at: datetime,
                 details: dict) -> None:
    session.add(Activity(lead_id=lead_id, kind=kind, at=at, summary=clip(summary) or "",
                         details={"by": actor.who, "how": actor.how, **details}))


def status_changed(session, rules, lead: Lead, change: Change, event: lifecycle.StatusChanged) -> None:
    lead.status, lead.status_changed_at, lead.blocked = event.new, change.at, None
    if event.moved_back:
        lead.automation_stopped = True
    details = {"from": event.old, "to": event.new, "reason": event.reason, "note": event.note}
    add_activity(session, lead.id, "status", f"{event.old} → {event.new}", change.actor, change.at,
                 {k: v for k, v in details.items() if v is not None})


def fields_set(session, rules, lead: Lead, change: Change, event: lifecycle.FieldsSet) -> None:
    custom = dict(lead.fields or {})
    for name, value in event.values.items():
        if name in LEAD_FIELDS:
            setattr(lead, name, clip(value, LEAD_FIELDS[name]) or None)
            if name == "email":
                lead.contact = lead.email.lower() if lead.email else None  # the address mail is matched on
                lead.contact_domain = domain_of(lead.contact)
        elif value:
            custom[clip(name, 200)] = clip(value)
        else:  # an empty value clears the field
            custom.pop(clip(name, 200), None)
    lead.fields = custom
    add_activity(session, lead.id, "fields", ", ".join(sorted(event.values)), change.actor, change.at,
                 {"values": dict(event.values)})


def column_changed(session, rules, lead: Lead, change: Change, event: lifecycle.ColumnChanged) -> None:
    setattr(lead, event.column, event.new)
    add_activity(session, lead.id, event.column, f"{event.old or 'none'} → {event.new}", change.actor, change.at,
                 {"from": event.old, "to": event.new})


def contact_logged(session, rules, lead: Lead, change: Change, event: lifecycle.ContactLogged) -> None:
    if event.kind == "call":  # a call made is outreach: a reply may move the lead on
        lead.last_outreach_at = max(lead.last_outreach_at or event.at, event.at)
    details = {"outcome": event.outcome, "at": event.at.isoformat(), "note": event.note}
    add_activity(session, lead.id, event.kind, event.summary, change.actor, change.at,
                 {k: v for k, v in details.items() if v is not None})


def task_due(session, rules: LeadRules, lead: Lead, change: Change, event: lifecycle.TaskDue) -> None:
    title = event.title if event.literal else rules.render_title(event.title, lead_fields(lead))
    session.add(Task(lead_id=lead.id, owner_id=lead.owner_id, title=clip(title, 500), due_at=event.due_at,
                     state="open", status=event.status, created_at=change.at))
    add_activity(session, lead.id, "task", title, change.actor, change.at, {"due_at": event.due_at.isoformat()})


def steps_owed(session, rules: LeadRules, lead: Lead, change: Change, event: lifecycle.StepsOwed) -> None:
    owe_steps(session, rules, lead, event, change.at)


def tasks_cancelled(session, rules, lead: Lead, change: Change, event: lifecycle.OpenTasksCancelled) -> None:
    cancel_open_tasks(session, lead, change)


def cancel_open_tasks(session, lead: Lead, change: Change, *where) -> int:
    """The lead's open tasks (``where`` they match), an onboarding's left to it; how many."""
    return session.execute(
        update(Task).where(Task.lead_id == lead.id, Task.state == "open", Task.onboarding_id.is_(None), *where)
        .values(state="cancelled", closed_at=change.at, closed_by=change.actor.who)).rowcount


def status_tasks_cancelled(session, rules, lead: Lead, change: Change,
                           event: lifecycle.StatusTasksCancelled) -> None:
    cancelled = cancel_open_tasks(session, lead, change, Task.status == event.status)
    if cancelled:
        add_activity(session, lead.id, "task", f"{plural(cancelled, 'open task')} of {event.status} cancelled",
                     change.actor, change.at, {"cancelled": cancelled, "status": event.status})


def created(session, rules: LeadRules, lead: Lead, change: Change, event: lifecycle.Created) -> None:
    add_activity(session, lead.id, "created", "entered by hand", change.actor, change.at,
                 {"source": event.source, "owner": event.owner, "assigned_by": event.assigned_by})
    if rules.notify_owner and event.owner and event.owner != change.actor.who:
        notifications.owe(session, lead.id, event.owner, notifications.NEW_LEAD, change.at)


def automation_blocked(session, rules, lead: Lead, change: Change, event: lifecycle.AutomationBlocked) -> None:
    lead.blocked = event.summary
    add_activity(session, lead.id, "blocked", event.summary, change.actor, change.at,
                 {"trigger": event.trigger, "to": event.to, "missing": list(event.missing)})


def opportunity_needed(session, rules: LeadRules, lead: Lead, change: Change, event) -> None:
    title = opportunity_title(lead.company, lead.name, lead.email, lead.subject)
    session.add(Opportunity(lead_id=lead.id, owner_id=lead.owner_id, title=clip(title, 500), stage=rules.first_stage,
                            created_at=change.at, stage_changed_at=change.at, fields={}))
    add_activity(session, lead.id, "opportunity", "opportunity created", change.actor, change.at, {})
    session.flush()  # its first stage's workflow reads when it was entered
    owe_steps(session, rules, lead, lifecycle.StepsOwed(rules.first_stage, deal=True), change.at)


def deal_lost(session, rules: LeadRules, lead: Lead, change: Change, event: lifecycle.DealLost) -> None:
    """The disqualified lead's open deal closes lost with it."""
    from leadtap.core.use_cases import deal_changes  # (which records deals through this module)

    opportunity = session.scalars(select(Opportunity).where(Opportunity.lead_id == lead.id)
                                  .with_for_update()).one_or_none()
    if opportunity is None:
        return
    closed = deals.lost_with_lead(deal_changes.deal_of(session, lead, opportunity), rules.deals, event.reason,
                                  event.note, change.at)
    if closed is not None:
        record(session, rules, lead, closed, deal_changes.RECORDERS, activity=False)


def follow_up_lead(session, rules: LeadRules, lead: Lead, change: Change, event: lifecycle.FollowUpLead) -> None:
    follow = Lead(name=lead.name, email=lead.email, phone=lead.phone, company=lead.company, message=lead.message,
                  fields=dict(lead.fields or {}), source=lead.source, type=event.type or lead.type,
                  status=rules.pipeline_of(lead).default_status, pipeline=lead.pipeline,
                  status_changed_at=change.at, owner_id=lead.owner_id, mailbox=lead.mailbox, contact=lead.contact,
                  contact_domain=lead.contact_domain,
                  subject=lead.subject, received_at=change.at, created_at=change.at, warnings=[],
                  snoozed_until=event.snoozed_until, follow_up_of=lead.id, last_activity_at=change.at)
    session.add(follow)
    session.flush()
    add_activity(session, follow.id, "created", f"follow-up of lead {lead.id}", change.actor, change.at,
                 {"follow_up_of": lead.id})
    if rules.webhooks:
        webhooks.owe_created(session, rules.webhooks, lambda: webhooks.lead_data(session, [follow.id]), change.at,
                             by=f"follow-up of lead {lead.id}", depth=session.info.get("recording", 0))


def owner_changed(session, rules, lead: Lead, change: Change, event: lifecycle.OwnerChanged) -> None:
    owner = session.scalars(select(Owner).where(Owner.email == event.new)).one()
    lead.owner_id, lead.assigned_at = owner.id, change.at
    if rules.notify_owner:
        notifications.owe(session, lead.id, owner.email, notifications.NEW_LEAD, change.at)
    session.execute(update(Task).where(Task.lead_id == lead.id, Task.state == "open", Task.onboarding_id.is_(None))
                    .values(owner_id=owner.id))  # an onboarding's tasks stay with the onboarding's owner
    # the deal follows; a staleness warning to the old owner is moot: the new one is warned in turn
    session.execute(update(Opportunity).where(Opportunity.lead_id == lead.id)
                    .values(owner_id=owner.id, warned_for=None, warned_at=None))
    add_activity(session, lead.id, "owner", f"{event.old or 'nobody'} → {event.new}", change.actor, change.at,
                 {"from": event.old, "to": event.new})


def note_added(session, rules, lead: Lead, change: Change, event: lifecycle.NoteAdded) -> None:
    add_activity(session, lead.id, "note", event.text, change.actor, change.at, {})


def snoozed(session, rules, lead: Lead, change: Change, event: lifecycle.Snoozed) -> None:
    lead.snoozed_until = event.until
    add_activity(session, lead.id, "snooze", f"until {event.until.isoformat()}", change.actor, change.at,
                 {"until": event.until.isoformat()})


RECORDERS = {
    lifecycle.Created: created,
    lifecycle.StatusChanged: status_changed,
    lifecycle.FieldsSet: fields_set,
    lifecycle.ColumnChanged: column_changed,
    lifecycle.ContactLogged: contact_logged,
    lifecycle.TaskDue: task_due,
    lifecycle.StepsOwed: steps_owed,
    lifecycle.OpenTasksCancelled: tasks_cancelled,
    lifecycle.StatusTasksCancelled: status_tasks_cancelled,
    lifecycle.AutomationBlocked: automation_blocked,
    lifecycle.OpportunityNeeded: opportunity_needed,
    lifecycle.FollowUpLead: follow_up_lead,
    lifecycle.DealLost: deal_lost,
    lifecycle.OwnerChanged: owner_changed,
    lifecycle.NoteAdded: note_added,
    lifecycle.Snoozed: snoozed,
}
