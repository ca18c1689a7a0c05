"""Services: the state changes leadtap makes, each inside a caller's transaction.

Owners and the rotation, the ledger's queries, and what a new lead starts
with. Turning a batch of messages into leads is ``core.use_cases.batch.LeadBatch``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadtap.core.config.load import Config, MailboxConfig
from leadtap.core.store.db import LedgerEntry, MailboxState, Owner, Rotation
from leadtap.core.rules.model import IncomingMessage, Outcome


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
    warnings: tuple[str, ...] = ()  # what was repaired to read the message


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


def ledger_settled(session: Session, mailbox: str, uidvalidity: int, uids: list[int]) -> set[int]:
    """The UIDs among ``uids`` whose ledger row is final."""
    return {uid for uid, e in ledger_entries(session, mailbox, uidvalidity, uids).items()
            if Outcome(e.outcome).is_final}


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


def set_aside_uids(session: Session, mailbox: str, uidvalidity: int, max_attempts: int) -> set[int]:
    return set(
        session.scalars(
            select(LedgerEntry.uid).where(
                LedgerEntry.mailbox == mailbox,
                LedgerEntry.uidvalidity == uidvalidity,
                LedgerEntry.outcome == Outcome.FAILED.value,
                LedgerEntry.attempts >= max_attempts,
            )
        )
    )


def trouble_counts(session: Session, mailbox: str, max_attempts: int) -> tuple[int, int]:
    """(failed and waiting for another attempt, set aside) for one mailbox, as the ledger says now."""
    rows = session.execute(select(LedgerEntry.attempts >= max_attempts, func.count())
                           .where(LedgerEntry.mailbox == mailbox, LedgerEntry.outcome == Outcome.FAILED.value)
                           .group_by(LedgerEntry.attempts >= max_attempts)).all()
    counts = {bool(aside): n for aside, n in rows}
    return counts.get(False, 0), counts.get(True, 0)


def last_uid(session: Session, mailbox: str, uidvalidity: int) -> int:
    state = session.get(MailboxState, mailbox)
    return state.last_uid if state and state.uidvalidity == uidvalidity else 0


def kept_place(session: Session, mailbox: str) -> MailboxState | None:
    """Where the mailbox's reading by UID stands: the UIDVALIDITY and folder
    it was kept under (None: its folder has never been read by UID)."""
    return session.get(MailboxState, mailbox)


def advance_last_uid(session: Session, mailbox: str, uidvalidity: int, uid: int, folder: str | None = None) -> None:
    state = session.get(MailboxState, mailbox)
    if state is None:
        session.add(MailboxState(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=uid, folder=folder))
        return
    if state.uidvalidity != uidvalidity:
        state.uidvalidity, state.last_uid = uidvalidity, uid
    elif uid > state.last_uid:
        state.last_uid = uid
    if folder is not None:
        state.folder = folder


@dataclass(frozen=True)
class LeadSettings:
    """What a new lead from one mailbox starts with."""

    status: str
    source: str
    role: str
    assign: bool
    open_statuses_exclude: tuple[str, ...]  # the closed statuses
    opportunity_stage: str | None  # None: no opportunity is created
    sent_folder: bool = False  # the team's sent mail: outreach only, never a lead
    notify_owner: bool = False  # a new lead's owner is owed the new-lead email
    company_owner: bool = False  # a new contact at a company with an open lead goes to its owner
    free_mail: frozenset[str] = frozenset()  # added to core.rules.free_mail's list
    lead_type: str | None = None  # [leads] default_type
    service_senders: tuple[str, ...] = ()  # [[opportunities.moves]] on mail: their sender patterns
    authserv_id: str | None = None  # [commands] authserv_id: whose Authentication-Results vouch for a From
    steps: tuple = ()  # the workflow of ``status`` (core.rules.workflows.Step): owed for each new lead
    pipeline: str | None = None  # the mailbox's [[pipelines]] name (None: the default pipeline)
    webhooks: tuple = ()  # [[webhooks]]: a new lead is owed to those that want lead.created
    stage_steps: tuple = ()  # the workflow of ``opportunity_stage``: owed for each new deal
    tasks: tuple = ()  # the tasks of ``status`` (TaskTemplate): made for each new lead, as for one entered by hand

    @classmethod
    def for_mailbox(cls, config: Config, mailbox: MailboxConfig) -> "LeadSettings":
        pipeline = config.pipeline_of(mailbox.pipeline)
        return cls(
            status=pipeline.default_status,
            pipeline=pipeline.key,
            source=mailbox.source,
            role=config.assignment.role,
            assign=config.assignment.enabled,
            open_statuses_exclude=config.closed,
            opportunity_stage=config.opportunities.stages[0] if config.opportunities.auto_create else None,
            sent_folder=mailbox.is_sent,
            notify_owner=config.notifications.enabled,
            company_owner=config.assignment.company_owner,
            free_mail=frozenset(config.assignment.free_mail),
            lead_type=config.leads.default_type,
            service_senders=tuple(m.sender for m in config.opportunities.deals.moves if m.on == "mail" and m.sender),
            authserv_id=config.commands.authserv_id,
            steps=pipeline.option(pipeline.default_status).steps,
            tasks=pipeline.option(pipeline.default_status).tasks,
            stage_steps=config.opportunities.deals.steps.get(config.opportunities.stages[0], ()),
            webhooks=tuple(hook for hook in config.webhooks if hook.wants("lead.created")),
        )


def message_details(ref: MessageRef, message: IncomingMessage) -> dict:
    details = clip_all({
        "mailbox": ref.mailbox,
        "uid": ref.uid,
        "message_id": message.message_id,
        "from": str(message.sender) if message.sender else None,
    })
    if message.warnings:
        details["warnings"] = [clip(w, 500) for w in message.warnings]
    return details


def clip(value: str | None, length: int | None = None) -> str | None:
    """Text a database takes: no NUL (PostgreSQL refuses it), no lone surrogate
    (no encoding takes it), at most ``length`` characters."""
    if not value:
        return value
    value = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return value[:length] if length else value


def clip_all(values: dict) -> dict:
    """``clip`` for every string in a JSON-able dict (custom fields, details)."""
    return {clip(str(k), 200): clip(v) if isinstance(v, str) else v for k, v in values.items()}
