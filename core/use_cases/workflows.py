"""Stage workflows in the database: the steps owed when a lead enters a status
(``core.rules.workflows``), and each one run when it is due — a task, an
assignment or fields set here, in one transaction with the lead's row lock;
an email prepared here (its recipients and context read just before the
send) and sent by ``scheduler.workflows``.

A step runs only if its lead is still in the stay it was owed for; else it
is dropped with the reason (``leadtap steps list``), never run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadtap.core.rules import lifecycle, workflows
from leadtap.core.rules.durations import span
from leadtap.core.rules.lifecycle import AUTOMATED, Change, Refused
from leadtap.core.rules.workflows import CONTACT, OWNER, ROLE, Step, Stay
from leadtap.core.rules.model import Outcome, safe_message_id
from leadtap.core.store.db import ContactEmail, Lead, LedgerEntry, Opportunity, Owner, ThreadMessage, WorkflowStep
from leadtap.core.store.outbox import Outbox
from leadtap.core.store.services import clip

OUTBOX = Outbox(WorkflowStep)


def step_rows(lead_id: int, status: str, steps: tuple[Step, ...], entered_at: datetime, now: datetime,
              deal: bool = False) -> list[dict]:
    """The rows owed for a lead (``deal``: its deal) that entered ``status``
    (the stage) at ``entered_at``: one per step, due at its ``after``."""
    return [{"lead_id": lead_id, "deal": deal, "status": status, "entered_at": entered_at, "step": index,
             "kind": step.kind, "fingerprint": step.fingerprint, "state": "pending", "attempts": 0,
             "next_attempt_at": entered_at + step.after, "created_at": now}
            for index, step in enumerate(steps)]


def owe_steps(session: Session, rules, lead: Lead, event: lifecycle.StepsOwed, now: datetime) -> None:
    """The lead (its row locked by the caller), or its deal, entered a status
    (a stage): its steps are owed for this stay — once: a reply that moves a
    lead out and back within one moment re-enters the same stay."""
    if event.deal:
        entered = session.scalar(select(Opportunity.stage_changed_at).where(Opportunity.lead_id == lead.id))
        steps = rules.deals.steps.get(event.status, ())
    else:
        entered, steps = lead.status_changed_at, rules.pipeline_of(lead).option(event.status).steps
    owed = session.scalar(select(WorkflowStep.id).where(
        WorkflowStep.lead_id == lead.id, WorkflowStep.deal.is_(event.deal), WorkflowStep.status == event.status,
        WorkflowStep.entered_at == entered).limit(1))
    if steps and owed is None:
        session.execute(insert(WorkflowStep), step_rows(lead.id, event.status, steps, entered, now, event.deal))


def step_of(row: WorkflowStep, rules, lead: Lead | None) -> Step | None:
    """The configured step a row was owed for; None when the config changed
    under it (the step at its place is not the same step)."""
    steps = rules.deals.steps.get(row.status, ()) if row.deal else rules.pipeline_of(lead).option(row.status).steps
    step = steps[row.step] if row.step < len(steps) else None
    return step if step is not None and step.fingerprint == row.fingerprint else None


def why_not(session: Session, row: WorkflowStep, lead: Lead | None, rules, now: datetime) -> str | None:
    """Why the step no longer runs (its lead, or deal, moved on; its config
    changed; it is days late), or None."""
    if row.deal:
        deal = session.scalar(select(Opportunity).where(Opportunity.lead_id == row.lead_id)) if lead else None
        stay = Stay(deal.stage, deal.stage_changed_at, deal=True) if deal else None
    else:
        stay = Stay(lead.status, lead.status_changed_at) if lead else None
    moved = workflows.moved_on(row.status, row.entered_at, stay)
    if moved:
        return moved
    if step_of(row, rules, lead) is None:
        where = "the deal stage" if row.deal else "status"
        return f"{where} {row.status}'s workflow no longer has this step (the config changed)"
    return workflows.too_late(row.next_attempt_at, now)


def locked_lead(session: Session, lead_id: int) -> Lead | None:
    """The lead under its row lock, read afresh (a copy read before the lock is refreshed)."""
    return session.scalars(select(Lead).where(Lead.id == lead_id).with_for_update()
                           .execution_options(populate_existing=True)).one_or_none()


def run_in_database(session: Session, rules, row: WorkflowStep, step: Step, lead: Lead, now: datetime) -> str:
    """A task, an assignment or fields set, by automation, in the caller's
    transaction; what was done, in words (or ``Refused``)."""
    from leadtap.core.use_cases import changes

    state = changes.state_of(session, lead)
    pipeline = rules.pipeline_of(lead)
    if step.kind in ("task", "assign") and not pipeline.is_open(lead.status):
        raise Refused(f"the lead is {lead.status}: a closed lead takes no new tasks and is not reassigned")
    if step.kind == "task":
        event = lifecycle.TaskDue(step.title, now + step.due, status=None if row.deal else row.status)
        change = Change(lead.id, AUTOMATED, now, (event,))
    elif step.kind == "assign":
        current = session.get(Owner, lead.owner_id) if lead.owner_id else None
        if current is not None and current.active and step.role in (current.roles or []):
            raise Refused(f"the lead is already with {current.email}, of the {step.role} role")
        owner = changes.next_owner(session, step.role, state.owner, now)
        change = lifecycle.assign(state, owner.email, pipeline, AUTOMATED, now)
    else:
        values = lifecycle.normalized(step.values, pipeline, f"lead {lead.id}")
        changed = {k: v for k, v in values.items() if v != (state.fields.get(k) or "")}
        if not changed:
            return "nothing to set: the lead has these values"
        change = Change(lead.id, AUTOMATED, now, (lifecycle.FieldsSet(changed),))
    changes.record(session, rules, lead, change, activity=False)
    return step.describe()


# --- emails ---------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    """What a step's email needs, read just before it is sent."""

    row_id: int
    step: Step
    lead: Lead
    owner: Owner | None
    deal: Opportunity | None
    recipients: tuple[str, ...]
    answers: str | None = None  # the contact's own enquiry's Message-ID: the email answers it
    by_mail: bool = False  # the lead came by mail (not entered by hand)


class MaybeSent(Refused):
    """An earlier attempt at the contact's email was cut off mid-send (its
    sender died): it may have gone out, so it is not sent again."""


def recipients(session: Session, step: Step, lead: Lead, owner: Owner | None, own: set[str]) -> tuple[str, ...]:
    """Who the step writes to now, or ``Refused`` with why nobody."""
    if step.to == OWNER:
        if owner is None or not owner.active:
            raise Refused("the lead has no active owner")
        return (owner.email,)
    if step.to.startswith(ROLE):
        role = step.to.removeprefix(ROLE)
        found = tuple(o.email for o in session.scalars(select(Owner).where(Owner.active.is_(True)).order_by(Owner.id))
                      if role in (o.roles or []))
        if not found:
            raise Refused(f"no active owner holds the role {role!r}")
        return found
    if step.to == CONTACT:
        owners = set(session.scalars(select(Owner.email)))
        address = lead.contact or (lead.email or "").lower() or None
        refused = workflows.contact_refused(address, owners, own)
        if refused:
            raise Refused(refused)
        return (address,)
    return (step.to,)


def enquiry(session: Session, lead: Lead, contact: str) -> tuple[str | None, bool]:
    """The Message-ID an email to the contact answers — the enquiry that made
    the lead, when the contact wrote it (not a web form's robot, not an
    owner's forward: the contact never saw those) — and whether mail made it."""
    made = session.execute(select(LedgerEntry.message_id, LedgerEntry.sender).where(
        LedgerEntry.lead_id == lead.id, LedgerEntry.outcome == Outcome.LEAD.value).order_by(LedgerEntry.id).limit(1)
    ).first()
    if made is None:
        return None, False
    wrote_it = (made.sender or "").lower() == contact
    return (safe_message_id(made.message_id) if wrote_it else None), True


def reserve_contact(session: Session, contact: str, template: str, row_id: int, now: datetime,
                    once_per: timedelta) -> bool:
    """The contact's one email of ``template`` in ``once_per``, taken for this
    step — False when another step has it (sent, or being sent, in the
    period). Two workers: the key makes one of them wait, then see the other's."""
    key = (contact, template)
    row = session.get(ContactEmail, key, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(ContactEmail(contact=contact, template=template, step_id=row_id, sent_at=now))
            return True
        except IntegrityError:  # another worker's step took it just now
            row = session.get(ContactEmail, key, with_for_update=True, populate_existing=True)
    if row.step_id == row_id:
        return True  # this step's own, taken before it was retried
    if row.sent_at > now - once_per:
        return False
    row.step_id, row.sent_at = row_id, now
    return True


def give_back(session: Session, row_id: int) -> None:
    """A step whose email to the contact was not sent frees the contact's period."""
    session.execute(delete(ContactEmail).where(ContactEmail.step_id == row_id))


def letter(session: Session, row: WorkflowStep, step: Step, lead: Lead, now: datetime,
           own: set[str]) -> Letter:
    """The email a claimed step sends, or ``Refused``: nobody to write to, or
    the contact already had this template within its period."""
    owner = session.get(Owner, lead.owner_id) if lead.owner_id else None
    to = recipients(session, step, lead, owner, own)
    answers, by_mail = None, False
    if step.to_contact:
        if row.message_id is not None and row.last_error is None:
            raise MaybeSent(f"an earlier attempt to {to[0]} was cut off mid-send ({row.message_id}): "
                            f"it may have gone out, so it is not sent twice")
        if not reserve_contact(session, to[0], step.template, row.id, now, step.once_per):
            raise Refused(f"{to[0]} already had {step.template} within {span(step.once_per)}")
        answers, by_mail = enquiry(session, lead, to[0])
    deal = session.scalar(select(Opportunity).where(Opportunity.lead_id == lead.id))
    return Letter(row.id, step, lead, owner, deal, to, answers, by_mail)


def remember_sent(session: Session, row_id: int, lead_id: int, message_id: str, recipients: tuple[str, ...],
                  to_contact: bool) -> None:
    """The email's Message-ID and recipients on its row; the contact's (made
    and recorded before the send) is the lead's too, so the answer joins it."""
    row = session.get(WorkflowStep, row_id)
    row.message_id, row.recipient = clip(message_id, 998), clip(", ".join(recipients), 320)
    if to_contact:
        session.add(ThreadMessage(lead_id=lead_id, message_id=clip(message_id, 998)))


def listed(session: Session, limit: int = 200, lead_id: int | None = None) -> list[dict]:
    query = (select(WorkflowStep, Lead.name).outerjoin(Lead, Lead.id == WorkflowStep.lead_id)
             .order_by(WorkflowStep.id.desc()).limit(limit))
    if lead_id is not None:
        query = query.where(WorkflowStep.lead_id == lead_id)
    return [{"id": s.id, "lead_id": s.lead_id, "lead": name, "status": s.status, "step": s.step + 1,
             "kind": s.kind, "due_at": s.next_attempt_at.isoformat(), "state": s.state, "attempts": s.attempts,
             "recipient": s.recipient, "error": s.last_error,
             "sent_at": s.sent_at.isoformat() if s.sent_at else None}
            for s, name in session.execute(query)]
