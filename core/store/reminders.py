"""Reminders to owners whose leads sit too long in one status (Hanna CRM's
reminder settings: status, how long unchanged, email template, enabled).

A lead is stale for a status rule when it is open, in the rule's status, and
has been there — and its owner's — for at least ``after``. A status change or
a new owner starts a new *stay*. A task rule fires on an open task of an open
lead ``after`` past its due time; the task's due time starts its stay.

Within a stay the reminders are *rungs* of a ladder, counted from what went
out, not from the clock: the first (number 0) falls due ``after`` into the
stay, and with ``repeat_every`` the next one that long after the last rung
first went out — sent to anyone, refused for good, or refused for now by its
recipient's server (kept ``failed``, and tried again while its rung is
current). A send our own server or login failed leaves no trace, so an
outage climbs nothing. A rule enabled over old leads starts each stay at its
first reminder, and the ladder's escalation and reassignment come only after
the reminders before them went out. Each (lead, rule, stay, number, task) is
claimed per recipient by a unique insert before anything is sent: only the
claimer sends.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadtap.core.config.load import ReminderRule
from leadtap.core.store.outbox import CLAIM_LEASE
from leadtap.core.rules.model import is_away
from leadtap.core.store.db import Lead, Owner, Reminder, Task
from leadtap.core.store.tables import of_pipeline


# The pseudo-recipient of a reassignment's claim: once per lead, rule, stay and number.
REASSIGN = "(reassign)"
# The pseudo-recipient of a rung nobody could be sent (no active owner, no
# escalation role): recorded, so that the ladder still climbs to reassignment.
NOBODY = "(nobody)"


def due_number(stay_started_at: datetime, now: datetime, rule: ReminderRule,
               sent: Mapping[int, datetime] | None = None) -> int | None:
    """The stay's current rung (0, 1, …), or None before ``after``: the first
    once ``after`` into the stay; the last one gone out (``sent``: rung → when
    it first went out) until ``repeat_every`` has passed since, and then the next.
    A current rung is sent to whoever of its recipients does not have it yet."""
    if stay_started_at + rule.after > now:
        return None
    if not sent:
        return 0
    last = max(sent)
    if rule.repeat_every is not None and sent[last] + rule.repeat_every <= now:
        return last + 1
    return last


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
    owner_away: bool = False  # the owner is away now: the escalation role hears instead (or it waits)
    owner_skipped: bool = False  # the ladder's rung: the old owner hears from the outbox, not this reminder

    @property
    def key(self) -> tuple[int, str, datetime, int, int]:
        return (self.lead.id, self.rule.name, self.stay, self.number, self.task.id if self.task else 0)

    @property
    def stay_key(self) -> "StayKey":
        return (self.lead.id, self.rule.name, self.stay, self.task.id if self.task else 0)

    def for_recipient(self, email: str) -> "ClaimKey":
        return (*self.key, email)


# (lead id, rule, stay started at, number, task id or 0, recipient): what one claim covers.
ClaimKey = tuple[int, str, datetime, int, int, str]


def stay_start(lead: Lead) -> datetime:
    """A status stay starts at the later of the status change and the owner's assignment."""
    if lead.assigned_at is not None and lead.assigned_at > lead.status_changed_at:
        return lead.assigned_at
    return lead.status_changed_at


@dataclass
class Found:
    """The reminders due now, and the claims already sent or being sent (per recipient)."""

    due: list[Due]
    taken: set[ClaimKey]


def find_due(session: Session, rules: tuple[ReminderRule, ...], closed: tuple[str, ...], now: datetime) -> Found:
    """Every reminder due now — one query per rule for the stays past
    ``after``, on the (status, status_changed_at) or the (state, due_at)
    index, and one read of their leads' reminders: which rung each stay is
    on, and which recipients have it already."""
    stays: list[Due] = []
    for rule in rules:
        if rule.enabled and rule.for_tasks:
            stays += overdue_tasks(session, rule, closed, now)
        elif rule.enabled and rule.status not in closed:
            stays += stale_leads(session, rule, now)
    sent, taken = ladder_history(session, sorted({d.lead.id for d in stays}), now)
    found = []
    for d in stays:
        number = due_number(d.stay, now, d.rule, sent.get(d.stay_key))
        if number is not None:
            d.number = number
            found.append(d)
    keys = {d.key for d in found}
    return Found(found, {key for key in taken if key[:5] in keys})


def awake(now: datetime):
    return or_(Lead.snoozed_until.is_(None), Lead.snoozed_until <= now)  # a snoozed lead waits


def stale_leads(session: Session, rule: ReminderRule, now: datetime) -> list[Due]:
    since = now - rule.after
    rows = session.execute(
        select(Lead, Owner)
        .outerjoin(Owner, Owner.id == Lead.owner_id)
        .where(Lead.status == rule.status, Lead.status_changed_at <= since)
        .where(or_(Lead.assigned_at.is_(None), Lead.assigned_at <= since), awake(now), *of_rules_pipeline(rule))
        .order_by(Lead.id)
    ).all()
    return [Due(lead, owner, rule, 0, now - stay_start(lead), stay_start(lead)) for lead, owner in rows]


def of_rules_pipeline(rule: ReminderRule) -> list:
    """A rule with a ``pipeline``: its leads only."""
    return [] if rule.pipeline is None else [of_pipeline(rule.pipeline_key)]


def overdue_tasks(session: Session, rule: ReminderRule, closed: tuple[str, ...], now: datetime) -> list[Due]:
    rows = session.execute(
        select(Task, Lead, Owner)
        .join(Lead, Lead.id == Task.lead_id)
        .outerjoin(Owner, Owner.id == Task.owner_id)
        .where(Task.state == "open", Task.due_at <= now - rule.after)
        # an onboarding's tasks go on after its lead closes (won leads usually do)
        .where(or_(Lead.status.not_in(closed), Task.onboarding_id.is_not(None)), awake(now),
               *of_rules_pipeline(rule))
        .order_by(Task.due_at, Task.id)
    ).all()
    return [Due(lead, owner, rule, 0, now - task.due_at, task.due_at, task) for task, lead, owner in rows]


# (lead id, rule, stay started at, task id or 0): one stay's ladder.
StayKey = tuple[int, str, datetime, int]


def ladder_history(session: Session, lead_ids: list[int],
                   now: datetime) -> tuple[dict[StayKey, dict[int, datetime]], set[ClaimKey]]:
    """For each stay of these leads, its rungs gone out (number → when it
    first went out: sent to anyone, or first refused for now by a recipient's
    server); and every claim sent, or held by someone whose lease still runs."""
    sent: dict[StayKey, dict[int, datetime]] = defaultdict(dict)
    taken: set[ClaimKey] = set()
    for start in range(0, len(lead_ids), 500):
        for row in session.execute(
            select(Reminder.lead_id, Reminder.rule, Reminder.stay_started_at, Reminder.repeat, Reminder.task_id,
                   Reminder.recipient, Reminder.state, Reminder.claimed_at, Reminder.sent_at,
                   Reminder.first_failed_at)
            .where(Reminder.lead_id.in_(lead_ids[start : start + 500]))
        ):
            if row.state == "sent" or (row.state == "claimed" and row.claimed_at > now - CLAIM_LEASE):
                taken.add((row.lead_id, row.rule, row.stay_started_at, row.repeat, row.task_id, row.recipient))
            went_out = row.sent_at if row.state == "sent" else row.first_failed_at
            if went_out is not None and row.recipient != REASSIGN:
                rungs = sent[(row.lead_id, row.rule, row.stay_started_at, row.task_id)]
                rungs[row.repeat] = min(rungs.get(row.repeat, went_out), went_out)
    return sent, taken


def claim(session: Session, key: ClaimKey, token: str, now: datetime) -> bool:
    """Claim one reminder to one recipient: a unique insert, or taking over a
    claim whose lease ran out. True when this sweep (``token``) may send it."""
    lead_id, rule, stay, number, task_id, recipient = key
    try:
        with session.begin_nested():
            session.add(Reminder(lead_id=lead_id, rule=rule, stay_started_at=stay, repeat=number, task_id=task_id,
                                 recipient=recipient, state="claimed", token=token, claimed_at=now))
        return True
    except IntegrityError:  # a claim whose lease ran out, or one that failed for now, is taken over
        taken = session.execute(
            update(Reminder)
            .where(*key_clause(key), or_(and_(Reminder.state == "claimed", Reminder.claimed_at <= now - CLAIM_LEASE),
                                         Reminder.state == "failed"))
            .values(state="claimed", claimed_at=now, token=token)
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
    """Nothing was said of these (our server or our login failed, the sweep
    stopped): this sweep's claims go, so a later one tries again — those that
    failed before stay failed, with when they first did."""
    for key in keys:
        mine = (*key_clause(key), Reminder.state == "claimed", Reminder.token == token)
        session.execute(delete(Reminder).where(*mine, Reminder.first_failed_at.is_(None)))
        session.execute(update(Reminder).where(*mine, Reminder.first_failed_at.is_not(None)).values(state="failed"))


def fail(session: Session, keys: list[ClaimKey], error: str, token: str, now: datetime) -> None:
    """The recipient's server refused these for now (a full mailbox, a rate
    limit): kept as failed, tried again by later sweeps, and counted by the
    ladder from the first failure."""
    for key in keys:
        session.execute(
            update(Reminder).where(*key_clause(key), Reminder.state == "claimed", Reminder.token == token)
            .values(state="failed", last_error=error,
                    first_failed_at=func.coalesce(Reminder.first_failed_at, now)))


def key_clause(key: ClaimKey) -> tuple:
    lead_id, rule, stay, number, task_id, recipient = key
    return (Reminder.lead_id == lead_id, Reminder.rule == rule, Reminder.stay_started_at == stay,
            Reminder.repeat == number, Reminder.task_id == task_id, Reminder.recipient == recipient)


def owners_with_role(session: Session, role: str, now: datetime) -> list[Owner]:
    """The role's owners present now (active, not away)."""
    return [o for o in session.scalars(select(Owner).where(Owner.active.is_(True)).order_by(Owner.position))
            if role in (o.roles or []) and not is_away(o, now)]


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
