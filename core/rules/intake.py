"""What a message is to the CRM — the per-message decision, as plain rules.

Given what is already known (identities seen, thread Message-IDs, the
contacts' leads, the owners and the rotation), a message is one of:

- a **duplicate**: its identity was seen before;
- **outreach**: mail from an owner, or in a sent folder, addressed to open
  leads' contacts — never a lead; to nobody we know it is *not a lead*;
- an **attachment** to a lead: a reply in a lead's thread, or the contact of
  an open lead writing again (a *reply* for the lifecycle);
- a **new lead**, whose owner is the contact's earlier owner when still
  active (no turn taken), else the rotation's next;
- an owner's **forward** of a non-owner's enquiry (``ingest.forward`` reads
  it) is that enquiry: a new lead from the original sender, the forwarding
  owner's when present, or joining the contact's open lead.

No SQL, no clock: ``core.use_cases.batch`` loads what is known, asks, and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Hashable, Protocol, Sequence

from leadtap.core.rules.model import Candidate, Forwarded, IncomingMessage, LeadDraft, next_in_turn

LeadKey = Hashable  # a lead's id, or a lead decided earlier in the same batch


class Known(Protocol):
    """What the decision reads (``core.use_cases.batch.LeadBatch`` keeps it in memory)."""

    def seen(self, identity: str) -> tuple[bool, LeadKey | None]: ...
    def lead_of_thread(self, thread_ids: Sequence[str]) -> LeadKey | None: ...
    def open_lead(self, contact: str) -> LeadKey | None: ...
    def earlier_owner(self, contact: str) -> int | None: ...
    def is_owner(self, email: str) -> bool: ...
    def is_active_owner(self, owner_id: int) -> bool: ...
    def owner_id(self, email: str) -> int | None: ...
    def company_owner(self, contact: str) -> int | None: ...
    def is_service_mail(self, message: IncomingMessage) -> bool: ...
    def vouched_for(self, message: IncomingMessage) -> bool: ...
    def rotation_pool(self) -> tuple[list[Candidate], int | None]: ...


@dataclass(frozen=True)
class Duplicate:
    lead: LeadKey | None


@dataclass(frozen=True)
class Outreach:
    leads: tuple[LeadKey, ...]  # empty: not a lead, for ``reason``
    reason: str


@dataclass(frozen=True)
class Attach:
    lead: LeadKey
    reason: str  # reply | repeat sender | forwarded
    forwarded: Forwarded | None = None  # the enquiry an owner forwarded: it joins, not the forward


@dataclass(frozen=True)
class Create:
    owner_id: int | None
    how: str  # follows contact | follows company | round-robin | forwarded by its owner | no active owner … | …
    forwarded: Forwarded | None = None  # the lead is this enquiry, an owner forwarded

    @property
    def takes_a_turn(self) -> bool:
        return self.how == "round-robin"


@dataclass(frozen=True)
class AboutContacts:
    """A third party's mail (an e-signature service: ``[[opportunities.moves]]``
    on ``mail``) to open leads' contacts: an activity on each, never a lead."""

    leads: tuple[LeadKey, ...]  # empty: not a lead, for ``reason``
    reason: str


Decision = Duplicate | Outreach | Attach | Create | AboutContacts


def decide(message: IncomingMessage, draft: LeadDraft, known: Known, sent_folder: bool, assign: bool,
           forwarded: Forwarded | None = None) -> Decision:
    seen, lead = known.seen(message.identity)
    if seen:
        return Duplicate(lead)
    if sent_folder:
        return outreach(message, known, "sent to no open lead")
    if message.sender and known.is_owner(message.sender.email.lower()):
        sent_to = outreach(message, known, "from an owner")
        if (not sent_to.leads and forwarded is not None and is_forwarded_enquiry(message, forwarded, known)
                and known.vouched_for(message)):
            return forwarded_enquiry(message.sender.email.lower(), forwarded, known, assign)
        return sent_to
    lead = known.lead_of_thread(message.thread_ids)
    if lead is not None:
        return Attach(lead, "reply")
    lead = known.open_lead(draft.contact) if draft.contact else None
    if lead is not None:
        return Attach(lead, "repeat sender")
    if known.is_service_mail(message) and known.vouched_for(message):
        leads = [known.open_lead(r) for r in message.recipients]
        return AboutContacts(tuple(dict.fromkeys(lead for lead in leads if lead is not None)),
                             "a service's mail about no open lead")
    return choose_owner(draft.contact, known) if assign else Create(None, "assignment disabled")


def is_forwarded_enquiry(message: IncomingMessage, forwarded: Forwarded, known: Known) -> bool:
    """An owner's forward of someone else's message to the watched mailbox —
    not a reply to that person (it would be addressed to them: outreach), not
    mail to an open lead's contact carrying another's message (outreach too:
    the caller asks that first), and only when the receiving server vouches
    for the owner's From (``vouched_for``: a forged forward picks no owner)."""
    original = forwarded.message.sender.email.lower() if forwarded.message.sender else None
    return original is not None and not known.is_owner(original) and original not in message.recipients


def forwarded_enquiry(forwarder: str, forwarded: Forwarded, known: Known, assign: bool) -> Decision:
    """The original enquiry as if it had come to the mailbox: seen already, a
    contact's open lead, or a new lead — the forwarding owner's when present."""
    seen, lead = known.seen(forwarded.message.identity)
    if seen:
        return Duplicate(lead)
    contact = forwarded.draft.contact
    lead = known.open_lead(contact) if contact else None
    if lead is not None:
        return Attach(lead, "forwarded", forwarded)
    owner = known.owner_id(forwarder)
    if owner is not None and known.is_active_owner(owner):
        return Create(owner, "forwarded by its owner", forwarded)
    chosen = choose_owner(contact, known) if assign else Create(None, "assignment disabled")
    return replace(chosen, forwarded=forwarded)


def outreach(message: IncomingMessage, known: Known, nothing: str) -> Outreach:
    """The open leads whose contacts the mail is addressed to, in address order."""
    leads = [known.open_lead(r) for r in message.recipients]
    return Outreach(tuple(dict.fromkeys(lead for lead in leads if lead is not None)), nothing)


def choose_owner(contact: str | None, known: Known) -> Create:
    """The contact's earlier owner when still active (no turn taken), else
    the owner of an open lead at the contact's company (``[assignment]
    company_owner``: HubSpot's owner sync with the company), else the next in turn."""
    earlier = known.earlier_owner(contact) if contact else None
    if earlier is not None and known.is_active_owner(earlier):
        return Create(earlier, "follows contact")
    colleague = known.company_owner(contact) if contact else None
    if colleague is not None and known.is_active_owner(colleague):
        return Create(colleague, "follows company")
    pool, last_position = known.rotation_pool()
    chosen = next_in_turn(pool, last_position)
    if chosen is None:
        return Create(None, "no active owner holds the role")
    return Create(chosen.id, "round-robin")
