"""Services: the state changes leadtap makes, each inside a caller's transaction.

The ingest pipeline calls ``record_lead_message`` once per message inside one
transaction per batch; everything a message changes (ledger row, identity,
lead, owner turn, opportunity, activity) commits or rolls back together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import Config, MailboxConfig
from core.db import (
    Activity,
    Lead,
    LedgerEntry,
    MailboxState,
    Opportunity,
    Owner,
    Rotation,
    SeenMessage,
    ThreadMessage,
)
from core.model import Candidate, IncomingMessage, LeadDraft, Outcome, next_in_turn


@dataclass(frozen=True)
class MessageRef:
    """Where a message sits: mailbox, UIDVALIDITY and UID."""

    mailbox: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    lead_id: int | None = None
    reason: str | None = None
    error: str | None = None


# --- owners and the rotation -------------------------------------------------


def sync_owners(session: Session, config: Config) -> None:
    """Make the owners table match the config. Owners no longer in the config
    are kept (their leads keep them) but become inactive."""
    existing = {o.email: o for o in session.scalars(select(Owner))}
    for position, owner in enumerate(config.owners):
        row = existing.pop(owner.email.lower(), None)
        if row is None:
            row = Owner(email=owner.email.lower())
            session.add(row)
        row.name, row.roles, row.active = owner.name, list(owner.roles), owner.active
        row.position, row.in_config = position, True
    for row in existing.values():
        row.active, row.in_config = False, False
    session.flush()
    ensure_rotation(session, config.assignment.role)


def ensure_rotation(session: Session, role: str) -> None:
    if session.get(Rotation, role) is not None:
        return
    try:
        with session.begin_nested():
            session.add(Rotation(role=role, turns=0))
    except IntegrityError:
        pass  # another worker created it at the same moment


def lock_rotation(session: Session, role: str) -> Rotation:
    """Lock the rotation row for ``role`` until the transaction ends.

    Taken at the start of every ingest batch: on PostgreSQL it serialises the
    batches of all workers, so two never give out the same turn and never
    deadlock on each other's ledger rows. On SQLite the write lock does it.
    """
    ensure_rotation(session, role)
    return session.scalars(select(Rotation).where(Rotation.role == role).with_for_update()).one()


def take_turn(session: Session, rotation: Rotation) -> Owner | None:
    pool = session.scalars(select(Owner).where(Owner.active.is_(True)).order_by(Owner.position)).all()
    pool = [o for o in pool if rotation.role in (o.roles or [])]
    last = session.get(Owner, rotation.last_owner_id) if rotation.last_owner_id else None
    chosen = next_in_turn([Candidate(o.id, o.position) for o in pool], last.position if last else None)
    if chosen is None:
        return None
    rotation.last_owner_id = chosen.id
    rotation.turns += 1
    return session.get(Owner, chosen.id)


def owner_following_contact(session: Session, contact: str | None) -> Owner | None:
    """The owner of the contact's most recent earlier lead, when still active."""
    if not contact:
        return None
    earlier = session.scalars(select(Lead).where(Lead.contact == contact).order_by(Lead.id.desc()).limit(1)).first()
    if earlier is None or earlier.owner_id is None:
        return None
    owner = session.get(Owner, earlier.owner_id)
    return owner if owner.active else None


# --- the ledger --------------------------------------------------------------


def ledger_entries(session: Session, mailbox: str, uidvalidity: int, uids: list[int]) -> dict[int, LedgerEntry]:
    rows = session.scalars(
        select(LedgerEntry).where(
            LedgerEntry.mailbox == mailbox,
            LedgerEntry.uidvalidity == uidvalidity,
            LedgerEntry.uid.in_(uids),
        )
    )
    return {row.uid: row for row in rows}


def retryable_uids(session: Session, mailbox: str, uidvalidity: int, max_attempts: int) -> list[int]:
    return list(
        session.scalars(
            select(LedgerEntry.uid).where(
                LedgerEntry.mailbox == mailbox,
                LedgerEntry.uidvalidity == uidvalidity,
                LedgerEntry.outcome == Outcome.FAILED.value,
                LedgerEntry.attempts < max_attempts,
            )
        )
    )


def last_uid(session: Session, mailbox: str, uidvalidity: int) -> int:
    state = session.get(MailboxState, mailbox)
    return state.last_uid if state and state.uidvalidity == uidvalidity else 0


def advance_last_uid(session: Session, mailbox: str, uidvalidity: int, uid: int) -> None:
    state = session.get(MailboxState, mailbox)
    if state is None:
        session.add(MailboxState(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=uid))
    elif state.uidvalidity != uidvalidity:
        state.uidvalidity, state.last_uid = uidvalidity, uid
    elif uid > state.last_uid:
        state.last_uid = uid


def record_outcome(
    session: Session,
    ref: MessageRef,
    result: Result,
    now: datetime,
    message: IncomingMessage | None = None,
    attempts_to_add: int = 0,
) -> LedgerEntry:
    """Write (or update) the message's ledger row."""
    entry = session.scalars(
        select(LedgerEntry).where(
            LedgerEntry.mailbox == ref.mailbox,
            LedgerEntry.uidvalidity == ref.uidvalidity,
            LedgerEntry.uid == ref.uid,
        )
    ).first()
    if entry is None:
        entry = LedgerEntry(
            mailbox=ref.mailbox, uidvalidity=ref.uidvalidity, uid=ref.uid, attempts=0, created_at=now
        )
        session.add(entry)
    if message is not None:
        entry.identity = message.identity
        entry.message_id = message.message_id
        entry.sender = message.sender.email[:320] if message.sender else None
        entry.subject = message.subject[:998]
    entry.outcome = result.outcome.value
    entry.reason, entry.error, entry.lead_id = result.reason, result.error, result.lead_id
    entry.attempts = (entry.attempts or 0) + attempts_to_add
    entry.updated_at = now
    return entry


# --- a message becomes a lead, or joins one -----------------------------------


@dataclass(frozen=True)
class LeadSettings:
    """What a new lead from one mailbox starts with."""

    status: str
    source: str
    role: str
    assign: bool
    open_statuses_exclude: tuple[str, ...]  # the closed statuses
    opportunity_stage: str | None  # None: no opportunity is created

    @classmethod
    def for_mailbox(cls, config: Config, mailbox: MailboxConfig) -> "LeadSettings":
        return cls(
            status=config.leads.default_status,
            source=mailbox.source,
            role=config.assignment.role,
            assign=config.assignment.enabled,
            open_statuses_exclude=config.leads.closed_statuses,
            opportunity_stage=config.opportunities.stages[0] if config.opportunities.auto_create else None,
        )


def record_lead_message(
    session: Session,
    ref: MessageRef,
    message: IncomingMessage,
    draft: LeadDraft,
    settings: LeadSettings,
    rotation: Rotation,
    now: datetime,
) -> Result:
    """Turn one message into a lead, or attach it to the lead it belongs to.

    1. Claim the message's identity; a message already handled is a duplicate.
    2. A reply naming a message of a lead's thread joins that lead.
    3. A message whose contact has an open lead joins that lead.
    4. Otherwise a new lead: owner (the contact's earlier owner, or the next in
       turn), opportunity, thread id and a "created" activity.
    """
    earlier = claim_identity(session, message.identity, now)
    if earlier is not None:
        return Result(Outcome.DUPLICATE, lead_id=earlier.lead_id, reason="already handled")
    lead = lead_of_thread(session, message) or open_lead_of_contact(session, draft.contact, settings)
    if lead is not None:
        attach_message(session, lead, ref, message, now)
        result = Result(Outcome.ATTACHED, lead_id=lead.id, reason="reply" if message.thread_ids else "repeat sender")
    else:
        lead = create_lead(session, ref, message, draft, settings, rotation, now)
        result = Result(Outcome.LEAD, lead_id=lead.id)
    session.get(SeenMessage, message.identity).lead_id = lead.id
    session.get(SeenMessage, message.identity).outcome = result.outcome.value
    return result


def claim_identity(session: Session, identity: str, now: datetime) -> SeenMessage | None:
    """Insert the identity; return the earlier record when it was already there."""
    earlier = session.get(SeenMessage, identity)
    if earlier is not None:
        return earlier
    try:
        with session.begin_nested():
            session.add(SeenMessage(identity=identity, outcome="pending", first_seen_at=now))
    except IntegrityError:
        return session.get(SeenMessage, identity)
    return None


def lead_of_thread(session: Session, message: IncomingMessage) -> Lead | None:
    ids = list(message.thread_ids)
    if not ids:
        return None
    return session.scalars(
        select(Lead).join(ThreadMessage, ThreadMessage.lead_id == Lead.id).where(ThreadMessage.message_id.in_(ids))
        .order_by(Lead.id.desc()).limit(1)
    ).first()


def open_lead_of_contact(session: Session, contact: str | None, settings: LeadSettings) -> Lead | None:
    if not contact:
        return None
    return session.scalars(
        select(Lead)
        .where(Lead.contact == contact, Lead.status.not_in(settings.open_statuses_exclude))
        .order_by(Lead.id.desc())
        .limit(1)
    ).first()


def attach_message(session: Session, lead: Lead, ref: MessageRef, message: IncomingMessage, now: datetime) -> None:
    add_thread_id(session, lead.id, message.message_id)
    kind = "reply" if message.thread_ids else "email"
    session.add(
        Activity(
            lead_id=lead.id,
            kind=kind,
            at=now,
            summary=message.subject,
            details=message_details(ref, message),
        )
    )


def create_lead(
    session: Session,
    ref: MessageRef,
    message: IncomingMessage,
    draft: LeadDraft,
    settings: LeadSettings,
    rotation: Rotation,
    now: datetime,
) -> Lead:
    owner, how = choose_owner(session, draft.contact, settings, rotation)
    lead = Lead(
        name=clip(draft.name, 300),
        email=clip(draft.email, 320),
        phone=clip(draft.phone, 100),
        company=clip(draft.company, 300),
        message=draft.message,
        fields=dict(draft.fields),
        source=settings.source,
        status=settings.status,
        status_changed_at=now,
        owner_id=owner.id if owner else None,
        mailbox=ref.mailbox,
        contact=draft.contact,
        subject=clip(message.subject, 998),
        received_at=message.date or now,
        created_at=now,
    )
    session.add(lead)
    session.flush()
    add_thread_id(session, lead.id, message.message_id)
    details = message_details(ref, message) | {"template": draft.template, "owner": owner.email if owner else None,
                                                "assigned_by": how}
    session.add(Activity(lead_id=lead.id, kind="created", at=now, summary=message.subject, details=details))
    if settings.opportunity_stage is not None:
        title = f"{draft.company or draft.name or draft.email or 'Lead'} — {message.subject}".strip(" —")
        session.add(
            Opportunity(
                lead_id=lead.id, owner_id=lead.owner_id, title=clip(title, 500), stage=settings.opportunity_stage,
                created_at=now,
            )
        )
    return lead


def choose_owner(
    session: Session, contact: str | None, settings: LeadSettings, rotation: Rotation
) -> tuple[Owner | None, str]:
    """The contact's earlier owner when still active (no turn taken), else the next in turn."""
    if not settings.assign:
        return None, "assignment disabled"
    follower = owner_following_contact(session, contact)
    if follower is not None:
        return follower, "follows contact"
    owner = take_turn(session, rotation)
    return owner, "round-robin" if owner else "no active owner holds the role"


def add_thread_id(session: Session, lead_id: int, message_id: str | None) -> None:
    if message_id:
        session.add(ThreadMessage(lead_id=lead_id, message_id=message_id[:998]))


def message_details(ref: MessageRef, message: IncomingMessage) -> dict:
    return {
        "mailbox": ref.mailbox,
        "uid": ref.uid,
        "message_id": message.message_id,
        "from": str(message.sender) if message.sender else None,
    }


def clip(value: str | None, length: int) -> str | None:
    return value[:length] if value else value


def count_leads(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Lead)) or 0
