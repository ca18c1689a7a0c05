"""Leads a person enters by hand: a phone enquiry, a card from a fair.

One transaction, in ingest's lock order (the rotation, then the lead): the
entry is checked by the lifecycle's rules (``core.rules.lifecycle.create``),
a contact who already has an open lead is refused with its id — or the entry
joins that lead as a note — and the new lead is written with its owner, its
deal, its status's tasks and the new-lead email owed, as mail's leads are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from leadtap.core.rules import lifecycle
from leadtap.core.rules.lifecycle import Actor, Change, LeadState, Refused
from leadtap.core.rules.free_mail import company_domain, domain_of
from leadtap.core.rules.model import present
from leadtap.core.rules.reply_grammar import pick
from leadtap.core.store.db import Lead, Owner
from leadtap.core.store.services import clip, clip_all, lock_rotation
from leadtap.core.use_cases.changes import (LEAD_FIELDS, LeadRules, active_owner, in_pipeline, load_lead,
                                            next_owner, open_lead_of, record, state_of)

BY_HAND = "(by hand)"  # the mailbox of a lead no mailbox brought


@dataclass(frozen=True)
class Entry:
    """What a person gives: name, email, phone, company and custom fields;
    ``owner`` an owner's email, ``next`` (the rotation) or None."""

    fields: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    status: str | None = None
    owner: str | None = None
    message: str | None = None
    type: str | None = None  # one of [leads] types (default: default_type)
    pipeline: str | None = None  # a pipeline's name (default: the default pipeline)


def add_lead(session: Session, rules: LeadRules, entry: Entry, actor: Actor, now: datetime,
             attach: bool = False) -> Change:
    """A new lead, or with ``attach`` a note on the contact's open lead."""
    pipeline = rules.pipeline_named(entry.pipeline)
    status = pick(entry.status, pipeline.statuses) if entry.status else pipeline.default_status
    source = pick(entry.source, rules.sources) if entry.source else rules.sources[0]
    lead_type = pick(entry.type, rules.types) if entry.type else rules.default_type
    if entry.type:
        lifecycle.check_type(lead_type, rules.types)
    fields = {name: value for name, value in lifecycle.normalized(entry.fields, pipeline).items() if value}
    contact = fields["email"].lower() if fields.get("email") else None
    lifecycle.check_new(LeadState(0, status, None, fields), source, rules.sources, pipeline,
                        in_pipeline(actor, pipeline))
    lock_rotation(session, rules.role)  # ingest's lock: a contact's mail and entry never both make a lead
    known = open_lead_of(session, rules, contact) if contact else None
    if known is not None:
        return join(session, rules, known, entry, actor, now) if attach else refuse_duplicate(session, known)
    owner, assigned_by = owner_for(session, rules, entry.owner, actor, contact, now)
    draft = LeadState(0, status, owner.email if owner else None, fields)
    change = lifecycle.create(draft, source, rules.sources, pipeline, actor, now, assigned_by, rules.auto_opportunity)
    lead = write(session, fields, entry.message, source, status, owner, contact, now, lead_type, pipeline.key)
    record(session, rules, lead, replace(change, lead_id=lead.id))
    return replace(change, lead_id=lead.id)


def refuse_duplicate(session: Session, lead: Lead) -> Change:
    owner = session.get(Owner, lead.owner_id) if lead.owner_id else None
    whose = f"{owner.email}'s" if owner else "no one's"
    raise Refused(f"{lead.contact} is already lead {lead.id} ({lead.status}, {whose}); "
                  f"--attach adds this enquiry to it")


def join(session: Session, rules: LeadRules, known: Lead, entry: Entry, actor: Actor, now: datetime) -> Change:
    """The entry joins the contact's open lead: a note saying what was entered."""
    said = ", ".join(f"{name} {value}" for name, value in sorted(entry.fields.items()) if value and value.strip())
    text = "enquiry entered by hand" + (f": {entry.message.strip()}" if entry.message and entry.message.strip()
                                        else "") + (f" ({said})" if said else "")
    lead = load_lead(session, known.id)
    change = lifecycle.add_note(state_of(session, lead), text, actor, now)
    record(session, rules, lead, change)
    return change


def owner_for(session: Session, rules: LeadRules, wanted: str | None, actor: Actor, contact: str | None,
              now: datetime) -> tuple[Owner | None, str]:
    """``--owner``: an active owner, or ``next`` in the rotation. Without it
    the owner who enters the lead; else as for mail's leads: the contact's
    earlier owner when present (no turn taken), else the rotation's next —
    none present (all away), no owner."""
    if wanted == "next":
        return next_owner(session, rules.role, None, now), "rotation"
    if wanted is not None:
        return active_owner(session, wanted), "hand"
    entering = owner_row(session, actor.who)
    if entering is not None and present(entering, now):
        return entering, "hand"
    if not rules.assign:
        return None, "nobody"
    earlier = earlier_owner(session, contact) if contact else None
    if earlier is not None and present(earlier, now):
        return earlier, "follows contact"
    colleague = company_owner(session, rules, contact) if contact and rules.company_owner else None
    if colleague is not None and present(colleague, now):
        return colleague, "follows company"
    try:
        return next_owner(session, rules.role, None, now), "rotation"
    except Refused:
        return None, "nobody"


def owner_row(session: Session, email: str) -> Owner | None:
    return session.scalars(select(Owner).where(Owner.email == email)).one_or_none()


def earlier_owner(session: Session, contact: str) -> Owner | None:
    """The owner of the contact's latest lead."""
    owner_id = session.scalar(select(Lead.owner_id).where(Lead.contact == contact).order_by(Lead.id.desc()).limit(1))
    return session.get(Owner, owner_id) if owner_id else None


def company_owner(session: Session, rules: LeadRules, contact: str) -> Owner | None:
    """The owner of the latest open lead at the contact's company (not a free-mail domain)."""
    company = company_domain(contact, rules.free_mail)
    if company is None:
        return None
    owner_id = session.scalar(select(Lead.owner_id).where(Lead.contact_domain == company, Lead.owner_id.is_not(None),
                                                          Lead.status.not_in(rules.closed))
                              .order_by(Lead.id.desc()).limit(1))
    return session.get(Owner, owner_id) if owner_id else None


def write(session: Session, fields: dict[str, str], message: str | None, source: str, status: str,
          owner: Owner | None, contact: str | None, now: datetime, lead_type: str | None,
          pipeline: str | None = None) -> Lead:
    columns = {name: clip(fields.get(name), length) for name, length in LEAD_FIELDS.items()}
    custom = clip_all({name: value for name, value in fields.items() if name not in LEAD_FIELDS})
    lead = Lead(**columns, message=clip(message), fields=custom, source=source, type=lead_type, status=status,
                pipeline=pipeline,
                status_changed_at=now, owner_id=owner.id if owner else None, mailbox=BY_HAND,
                contact=clip(contact, 320), contact_domain=domain_of(contact), subject=None, received_at=now,
                created_at=now, warnings=[],
                last_activity_at=now)
    session.add(lead)
    session.flush()
    return lead
