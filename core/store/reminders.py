"""Reminders to owners whose leads sit too long in one status (Hanna CRM's
reminder settings: status, how long unchanged, email template, enabled).

A lead is stale for a status rule when it is open, in the rule's status, and
has been there — and its owner's — for at least ``after``. A status change or
a new owner starts a new *stay*. A task rule fires on an open task of an open
lead ``after`` past its due time; the task's due time starts its stay. Within
a stay the first reminder is number 0; with ``repeat_every`` another one falls
due every ``repeat_every`` after that. Each (lead, rule, stay, number, task)
is claimed per recipient by a unique insert before anything is sent: only the
claimer sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadtap.core.config.load import ReminderRule
from leadtap.core.store.outbox import CLAIM_LEASE
from leadtap.core.store.db import Lead, Owner, Reminder, Task


def due_number(stay_started_at: datetime, now: datetime, rule: ReminderRule) -> int | None:
    """Which reminder of the stay is due now (0, 1, …), or None when none is yet."""
    stale_for = now - stay_started_at - rule.after
    if stale_for < timedelta(0):
        return None
    if rule.repeat_every is None:
        return 0
    return int(stale_for / rule.repeat_every)


@dataclass
class Due:
    """One reminder that falls due: a lead (and for a task rule, its task), the
    person reminded, the rule and the number."""

    lead: Lead
    owner: Owner | None
    rule: ReminderRule
    number: int
    stale_for: timedelta
    stay: datetime
    task: Task | None = None
    reassigned_to: Owner | None = None  # set when this reminder gave the lead to the next owner
    owner_skipped: bool = False  # the ladder's rung: the old owner hears from the outbox, not this reminder

    @property
    def key(self) -> tuple[int, str, datetime, int, int]:
        return (self.lead.id, self.rule.name, self.stay, self.number, self.task.id if self.task else 0)

    def for_recipient(self, email: str) -> "ClaimKey":
        return (*self.key, email)


# (lead id, rule, stay started at, number, task id or 0, recipient): what one claim covers.
ClaimKey = tuple[int, str, datetime, int, int, str]


def stay_start(lead: Lead) -> datetime:
    """A status stay starts at the later of the status change and the owner's assignment."""
    if lead.assigned_at is not None and lead.assigned_at > lead.status_changed_at:
        return lead.assigned_at
    return lead.status_changed_at


def find_due(session: Session, rules: tuple[ReminderRule, ...], closed: tuple[str, ...], now: datetime) -> list[Due]:
    """Every reminder due now by the clock — one query per rule, on the
    (status, status_changed_at) or the (state, due_at) index. Which of them
    still need sending is ``taken_keys``' answer, per recipient."""
    found: list[Due] = []
    for rule in rules:
        if rule.enabled and rule.for_tasks:
            found += overdue_tasks(session, rule, closed, now)
        elif rule.enabled and rule.status not in closed:
            found += stale_leads(session, rule, now)
    return found


def awake(now: datetime):
    return or_(Lead.snoozed_until.is_(None), Lead.snoozed_until <= now)  # a snoozed lead waits


def stale_leads(session: Session, rule: ReminderRule, now: datetime) -> list[Due]:
    since = now - rule.after
    rows = session.execute(
        select(Lead, Owner)
        .outerjoin(Owner, Owner.id == Lead.owner_id)
        .where(Lead.status == rule.status, Lead.status_changed_at <= since)
        .where(or_(Lead.assigned_at.is_(None), Lead.assigned_at <= since), awake(now))
        .order_by(Lead.id)
    ).all()
    found = []
    for lead, owner in rows:
        stay = stay_start(lead)
        number = due_number(stay, now, rule)
        if number is not None:
            found.append(Due(lead, owner, rule, number, now - stay, stay))
    return found


def overdue_tasks(session: Session, rule: ReminderRule, closed: tuple[str, ...], now: datetime) -> list[Due]:
    rows = session.execute(
        select(Task, Lead, Owner)
        .join(Lead, Lead.id == Task.lead_id)
        .outerjoin(Owner, Owner.id == Task.owner_id)
        .where(Task.state == "open", Task.due_at <= now - rule.after)
        # an onboarding's tasks go on after its lead closes (won leads usually do)
        .where(or_(Lead.status.not_in(closed), Task.onboarding_id.is_not(None)), awake(now))
        .order_by(Task.due_at, Task.id)
    ).all()
    found = []
    for task, lead, owner in rows:
        number = due_number(task.due_at, now, rule)
        if number is not None:
            found.append(Due(lead, owner, rule, number, now - task.due_at, task.due_at, task))
    return found


def taken_keys(session: Session, found: list[Due], now: datetime) -> set[ClaimKey]:
    """Claim keys already sent, or claimed by someone whose lease still runs."""
    keys = {due.key for due in found}
    lead_ids = sorted({key[0] for key in keys})
    taken: set[ClaimKey] = set()
    for start in range(0, len(lead_ids), 500):
        for row in session.execute(
            select(Reminder.lead_id, Reminder.rule, Reminder.stay_started_at, Reminder.repeat, Reminder.task_id,
                   Reminder.recipient, Reminder.state, Reminder.claimed_at)
            .where(Reminder.lead_id.in_(lead_ids[start : start + 500]))
        ):
            key = (row.lead_id, row.rule, row.stay_started_at, row.repeat, row.task_id)
            if key in keys and (row.state == "sent" or row.claimed_at > now - CLAIM_LEASE):
                taken.add((*key, row.recipient))
    return taken


def claim(session: Session, key: ClaimKey, token: str, now: datetime) -> bool:
    """Claim one reminder to one recipient: a unique insert, or taking over a
    claim whose lease ran out. True when this sweep (``token``) may send it."""
    lead_id, rule, stay, number, task_id, recipient = key
    try:
        with session.begin_nested():
            session.add(Reminder(lead_id=lead_id, rule=rule, stay_started_at=stay, repeat=number, task_id=task_id,
                                 recipient=recipient, state="claimed", token=token, claimed_at=now))
        return True
    except IntegrityError:
        taken = session.execute(
            update(Reminder)
            .where(*key_clause(key), Reminder.state == "claimed", Reminder.claimed_at <= now - CLAIM_LEASE)
            .values(claimed_at=now, token=token)
        )
        return taken.rowcount == 1


def mark_sent(session: Session, sent: list[tuple[ClaimKey, str | None]], token: str, now: datetime) -> int:
    """Sent (or refused for good, with the error): never sent again. Only the
    claims this sweep still holds (``token``): one taken over is not ours."""
    if not sent:
        return 0
    table = Reminder.__table__
    statement = (
        update(table)
        .where(table.c.lead_id == bindparam("k_lead"), table.c.rule == bindparam("k_rule"),
               table.c.stay_started_at == bindparam("k_stay"), table.c.repeat == bindparam("k_repeat"),
               table.c.task_id == bindparam("k_task"), table.c.recipient == bindparam("k_recipient"),
               table.c.token == token)
        .values(state="sent", sent_at=now, last_error=bindparam("k_error"))
    )
    rows = [{"k_lead": k[0], "k_rule": k[1], "k_stay": k[2], "k_repeat": k[3], "k_task": k[4], "k_recipient": k[5],
             "k_error": e} for k, e in sent]
    return session.connection().execute(statement, rows).rowcount


def release(session: Session, keys: list[ClaimKey], token: str) -> None:
    """Failures that may pass: drop this sweep's claims, so a later one tries again."""
    for key in keys:
        session.execute(delete(Reminder).where(*key_clause(key), Reminder.state == "claimed", Reminder.token == token))


def key_clause(key: ClaimKey) -> tuple:
    lead_id, rule, stay, number, task_id, recipient = key
    return (Reminder.lead_id == lead_id, Reminder.rule == rule, Reminder.stay_started_at == stay,
            Reminder.repeat == number, Reminder.task_id == task_id, Reminder.recipient == recipient)


def owners_with_role(session: Session, role: str) -> list[Owner]:
    return [o for o in session.scalars(select(Owner).where(Owner.active.is_(True)).order_by(Owner.position))
            if role in (o.roles or [])]


def sent_reminders(session: Session, limit: int = 200) -> list[dict]:
    rows = session.execute(
        select(Reminder, Lead.name).join(Lead, Lead.id == Reminder.lead_id).order_by(Reminder.id.desc()).limit(limit)
    )
    return [
        {
            "id": r.id, "lead_id": r.lead_id, "lead": name, "rule": r.rule, "number": r.repeat + 1,
            "task_id": r.task_id or None,
            "state": r.state, "recipient": r.recipient, "error": r.last_error,
            "sent_at": r.sent_at.isoformat() if r.sent_at else None,
        }
        for r, name in rows
    ]
