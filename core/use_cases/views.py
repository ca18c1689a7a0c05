"""Read models for the command line: leads and failed messages as plain dicts."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Iterator

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from leadtap.core.rules.reply_grammar import help_text
from leadtap.core.store.db import Activity, CommandReply, Lead, LedgerEntry, Opportunity, Owner, Task, ThreadMessage
from leadtap.core.rules.model import Outcome
from leadtap.core.store.tables import of_pipeline
from leadtap.core.use_cases.listing import iso, lead_dict, list_leads


def open_task_list(session: Session, lead_id: int, as_of: datetime | None = None) -> list[dict]:
    """The lead's open tasks (those open ``as_of`` then, if given), soonest
    due first, numbered as ``/done N`` takes them."""
    query = select(Task).where(Task.lead_id == lead_id).order_by(Task.due_at, Task.id)
    if as_of is None:
        query = query.where(Task.state == "open")
    else:
        query = query.where(Task.created_at < as_of, or_(Task.state == "open", Task.closed_at >= as_of))
    tasks = session.scalars(query)
    return [{"number": n, "id": t.id, "title": t.title, "due_at": iso(t.due_at)} for n, t in enumerate(tasks, 1)]


REPLY_PREFIX_RE = re.compile(r"^\s*((re|aw|sv|antw|odp|vs|ats|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def re_subject(subject: str | None) -> str:
    """``Re: <subject>`` once, however many reply prefixes the subject had
    (``Re: Re:``, ``AW:``, ``SV:`` ...)."""
    return "Re: " + (REPLY_PREFIX_RE.sub("", subject or "").strip() or "your reply")


def reply_view(reply: CommandReply, help: str | None = None) -> dict:
    """An owner's reply as its confirmation shows it: each command and what
    became of it; ``help``: the commands' list, with the pipeline's names."""
    results = reply.results or []
    return {"subject": reply.subject, "re_subject": re_subject(reply.subject), "sender": reply.sender, "results": results, "digest": reply.digest,
            "applied": sum(1 for r in results if r["applied"]), "refused": sum(1 for r in results if not r["applied"]),
            "help": (help or help_text()) if any(r["line"].lower().startswith("/help") for r in results) else None}


def list_replies(session: Session, limit: int = 200) -> list[dict]:
    """Owners' replies to leadtap's emails, newest first: those that ran (with
    each command's result) and those refused (with the reason) — from the
    messages ledger, where every one is recorded."""
    entries = session.execute(
        select(LedgerEntry, CommandReply).outerjoin(CommandReply, CommandReply.identity == LedgerEntry.identity)
        .where(or_(LedgerEntry.reason.like("reply: %"), LedgerEntry.reason.like("reply refused: %")))
        .order_by(LedgerEntry.id.desc()).limit(limit))  # a contact's answer ("reply") is their mail, not listed
    return [{"at": iso(entry.created_at), "mailbox": entry.mailbox, "uid": entry.uid, "sender": entry.sender,
             "subject": entry.subject, "lead_id": entry.lead_id, "outcome": entry.reason,
             "results": reply.results if reply is not None and entry.reason.startswith("reply: ") else []}
            for entry, reply in entries]


def board(session: Session, statuses: tuple[str, ...], owner: str | None, per_status: int, sort: str,
          desc: bool, pipeline: tuple[str | None] | None = None) -> list[dict]:
    """The Kanban: per status (the pipeline's, then any no longer configured)
    its count and its first ``per_status`` leads in the chosen order;
    ``pipeline``: (its key,) — its leads only."""
    counted = select(Lead.status, func.count()).outerjoin(Owner, Owner.id == Lead.owner_id).group_by(Lead.status)
    if pipeline is not None:
        counted = counted.where(of_pipeline(pipeline[0]))
    if owner:
        counted = counted.where(Owner.email == owner.lower())
    counts = dict(session.execute(counted).all())
    columns = [*statuses, *sorted(name for name in counts if name not in statuses)]
    return [{"status": name, "configured": name in statuses, "count": counts.get(name, 0),
             "leads": [{"id": lead["id"], "name": lead["name"] or lead["email"] or lead["phone"],
                        "owner": lead["owner"], "company": lead["company"]}
                       for lead in list_leads(session, name, owner, sort=sort, desc=desc, limit=per_status,
                                              statuses=statuses, pipeline=pipeline)] if counts.get(name) else []}
            for name in columns]


def show_lead(session: Session, lead_id: int) -> dict | None:
    row = session.execute(
        select(Lead, Owner, Opportunity)
        .outerjoin(Owner, Owner.id == Lead.owner_id)
        .outerjoin(Opportunity, Opportunity.lead_id == Lead.id)
        .where(Lead.id == lead_id)
    ).first()
    if row is None:
        return None
    result = lead_dict(*row)
    result["thread"] = list(session.scalars(select(ThreadMessage.message_id).where(ThreadMessage.lead_id == lead_id)))
    result["tasks"] = [
        {"id": t.id, "title": t.title, "due_at": iso(t.due_at), "state": t.state}
        for t in session.scalars(select(Task).where(Task.lead_id == lead_id).order_by(Task.id))
    ]
    result["activities"] = [
        {"at": iso(a.at), "kind": a.kind, "summary": a.summary, "details": a.details}
        for a in session.scalars(select(Activity).where(Activity.lead_id == lead_id).order_by(Activity.id))
    ]
    return result


def failed_messages(session: Session) -> list[dict]:
    rows = session.scalars(
        select(LedgerEntry).where(LedgerEntry.outcome == Outcome.FAILED.value).order_by(LedgerEntry.id)
    )
    return [
        {
            "id": e.id,
            "mailbox": e.mailbox,
            "uidvalidity": e.uidvalidity,
            "uid": e.uid,
            "message_id": e.message_id,
            "sender": e.sender,
            "subject": e.subject,
            "error": e.error,
            "reason": e.reason,
            "attempts": e.attempts,
            "updated_at": iso(e.updated_at),
        }
        for e in rows
    ]


def reset_failed(session: Session, ids: list[int] | None) -> list[tuple[str, int]]:
    """Give failed messages their attempts back; return (mailbox, uid) of each."""
    query = select(LedgerEntry).where(LedgerEntry.outcome == Outcome.FAILED.value)
    if ids is not None:
        query = query.where(LedgerEntry.id.in_(ids))
    entries = list(session.scalars(query))
    if entries:
        session.execute(update(LedgerEntry).where(LedgerEntry.id.in_([e.id for e in entries])).values(attempts=0))
    return [(e.mailbox, e.uid) for e in entries]


# --- export -----------------------------------------------------------------------

EXPORT_COLUMNS = ("id", "name", "email", "phone", "company", "status", "pipeline", "owner", "source", "type",
                  "mailbox", "subject", "received_at", "created_at", "status_changed_at", "last_activity_at",
                  "deal_stage", "deal_amount", "deal_close_date", "message")


def export_columns(declared: tuple[str, ...]) -> tuple[str, ...]:
    """The export's columns, in a stable order: the lead's, its deal's, then each declared custom field."""
    return (*EXPORT_COLUMNS, *(f"fields.{name}" for name in declared))


def export_rows(session: Session, since: datetime | None = None, status: str | None = None,
                pipeline: tuple[str | None] | None = None, batch: int = 1000) -> Iterator[dict]:
    """Every lead (received since ``since``, in ``status``, of ``pipeline``), by
    id, streamed ``batch`` at a time: memory stays flat however many there are."""
    query = (select(Lead, Owner.email, Opportunity.stage, Opportunity.fields)
             .outerjoin(Owner, Owner.id == Lead.owner_id).outerjoin(Opportunity, Opportunity.lead_id == Lead.id)
             .order_by(Lead.id).execution_options(yield_per=batch))
    if since is not None:
        query = query.where(Lead.received_at >= since)
    if status:
        query = query.where(Lead.status == status)
    if pipeline is not None:
        query = query.where(of_pipeline(pipeline[0]))
    for lead, owner, stage, deal_fields in session.execute(query):
        deal_fields = deal_fields or {}
        row = {"id": lead.id, "name": lead.name, "email": lead.email, "phone": lead.phone, "company": lead.company,
               "status": lead.status, "pipeline": lead.pipeline, "owner": owner, "source": lead.source,
               "type": lead.type, "mailbox": lead.mailbox, "subject": lead.subject,
               "received_at": iso(lead.received_at), "created_at": iso(lead.created_at),
               "status_changed_at": iso(lead.status_changed_at), "last_activity_at": iso(lead.last_activity_at),
               "deal_stage": stage, "deal_amount": deal_fields.get("amount"),
               "deal_close_date": deal_fields.get("close_date"), "message": lead.message}
        row.update({f"fields.{name}": value for name, value in (lead.fields or {}).items()})
        session.expunge(lead)  # nothing of a streamed lead stays in the session
        yield row
