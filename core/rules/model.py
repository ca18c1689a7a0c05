"""The domain: what a message is to leadtap, what can become of it, whose turn
it is. Plain code, no I/O: every rule here is tested without a server."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping, Sequence

# Header that marks mail sent by leadtap itself (reminders): never a lead.
LEADTAP_HEADER = "X-Leadtap"

# An email address, the one definition (owners, [commands] address, [smtp]
# from, a lead's contact): RFC 5322's atext, letters of any script (RFC 6531).
EMAIL_RE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# A Message-ID as leadtap finds it in a header (In-Reply-To, References)...
MESSAGE_ID_RE = re.compile(r"<[^<>\s]{1,990}>")
# ...and one it may write into a header of its own: printable ASCII only.
SAFE_MESSAGE_ID_RE = re.compile(r"<[!-;=?-~]{1,990}>")


class Outcome(str, enum.Enum):
    """What became of one message. Only FAILED is retried."""

    LEAD = "lead"  # a new lead was created
    ATTACHED = "attached"  # a reply or repeat sender: added to an existing lead
    DUPLICATE = "duplicate"  # the same message was already handled
    NOT_LEAD = "not_lead"  # auto-reply, bounce, list mail, leadtap's own mail
    FAILED = "failed"  # could not be processed; see error and attempts

    @property
    def is_final(self) -> bool:
        return self is not Outcome.FAILED


@dataclass(frozen=True)
class Address:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class IncomingMessage:
    """A parsed email, as the pipeline needs it."""

    identity: str  # equal for the same message seen twice (see ingest.parse)
    message_id: str | None
    sender: Address | None  # From
    reply_to: Address | None
    subject: str
    date: datetime | None
    text: str  # the body as text (HTML turned into text when there is no text part)
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    content_type: str = "text/plain"
    return_path: str | None = None  # None: no Return-Path header; "": an empty one (<>)
    recipients: tuple[str, ...] = ()  # To and Cc addresses, lower-cased (outreach names its lead here)
    warnings: tuple[str, ...] = ()  # what was repaired to read it (a broken structure, a charset, a header)
    # Authentication-Results, topmost first, each with its position among the
    # header's fields (a run ends at any other field); commands by reply check them
    auth_results: tuple[tuple[int, str], ...] = ()
    from_count: int = 1  # addresses in From: a reply acts only for one sender
    repeated: tuple[str, ...] = ()  # fields a message has once that it has more than once (lower case)
    body_digest: str = ""  # the raw body as DKIM's relaxed canonicalisation reads it, hashed
    reply_text: str | None = None  # an answer to leadtap's email: the sender's own text (its commands)
    attachments: tuple[str, ...] = ()  # the attachments' file names (the first fifty): deals move on them

    @property
    def correspondent(self) -> Address | None:
        """Who a reply would go to: Reply-To when present, else From."""
        return self.reply_to or self.sender

    @property
    def thread_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.in_reply_to + self.references))


@dataclass(frozen=True)
class LeadDraft:
    """The fields of a lead-to-be, as extracted from one message."""

    name: str | None
    email: str | None
    phone: str | None
    company: str | None
    message: str | None
    fields: dict[str, str]
    template: str | None  # the extraction template that matched, or None

    @property
    def contact(self) -> str | None:
        return self.email.lower() if self.email else None


@dataclass(frozen=True)
class Forwarded:
    """The enquiry inside a forward (``ingest.forward``), and the lead's fields read from it."""

    message: IncomingMessage
    draft: LeadDraft


def safe_message_id(value: str | None) -> str | None:
    """A Message-ID leadtap may name in an email's headers, or None."""
    return value if value and SAFE_MESSAGE_ID_RE.fullmatch(value) else None


def opportunity_title(company: str | None, name: str | None, email: str | None, subject: str | None) -> str:
    """A deal's title: who it is with, and what the enquiry was about."""
    who = company or name or email or "Lead"
    return f"{who} — {subject}" if subject else who


def rotation_pool(owners: Iterable, role: str, now: datetime, exclude: str | None = None) -> list[Candidate]:
    """Who may take a turn of ``role``: its active owners not away now (less
    ``exclude``), in their config order. ``owners``: rows with id, position,
    active, roles, email, away_since, away_until."""
    return [Candidate(o.id, o.position) for o in owners
            if present(o, now) and role in (o.roles or []) and o.email != exclude]


def is_away(owner, now: datetime) -> bool:
    """Away now: since ``away_since``, until ``away_until`` (None: until back)."""
    since, until = owner.away_since, owner.away_until
    return since is not None and since <= now and (until is None or now < until)


def present(owner, now: datetime) -> bool:
    """Active (in the config) and not away: takes new leads and their reminders."""
    return bool(owner.active) and not is_away(owner, now)


def valid_email(value: str | None) -> bool:
    return bool(value) and EMAIL_RE.fullmatch(value.strip()) is not None


def draft_from_fields(template: str, found: Mapping[str, str]) -> LeadDraft:
    """A lead from a template's fields. An invalid ``email`` is kept only as a
    custom field, so it never becomes the contact address."""
    custom = {k: v for k, v in found.items() if k not in ("name", "email", "phone", "company", "message")}
    email = found.get("email")
    if email is not None and not valid_email(email):
        custom["email"] = email
        email = None
    return LeadDraft(
        name=found.get("name"),
        email=email.strip() if email else None,
        phone=found.get("phone"),
        company=found.get("company"),
        message=found.get("message"),
        fields=custom,
        template=template,
    )


def draft_from_message(message: IncomingMessage, from_a_form: bool = False) -> LeadDraft:
    """A lead from the message itself, when no template matched.

    ``from_a_form``: the sender is a notification address (a template's
    ``from`` names it). Then the sender is not the contact — every visitor's
    notification comes from it, and they must not all join one lead."""
    who = message.correspondent
    if from_a_form:
        return LeadDraft(None, None, None, None, message.text.strip() or None,
                         {"sender": str(who)} if who else {}, None)
    return LeadDraft(
        name=(who.name or None) if who else None,
        email=who.email if who and valid_email(who.email) else None,
        phone=None,
        company=None,
        message=message.text.strip() or None,
        fields={},
        template=None,
    )


@dataclass(frozen=True)
class Candidate:
    """An owner who may receive a turn: their id and place in the config."""

    id: int
    position: int


def next_in_turn(pool: Sequence[Candidate], last_position: int | None) -> Candidate | None:
    """The owner after the one who got the previous lead, wrapping round.

    Positions, not list indexes, so an owner removed from the pool since the
    last turn still marks where the rotation continues.
    """
    ordered = sorted(pool, key=lambda c: c.position)
    if not ordered:
        return None
    if last_position is None:
        return ordered[0]
    for candidate in ordered:
        if candidate.position > last_position:
            return candidate
    return ordered[0]
