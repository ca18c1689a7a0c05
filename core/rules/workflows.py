"""Stage workflows: the steps a status runs when a lead enters it, and a deal
stage when the lead's deal does (HubSpot's stage workflows, Hanna's task
templates grown up).

Plain code: no SQL, no clock, no I/O. The ``steps`` are owed, one row each,
in the transaction that moves the lead (the deal) in; each runs at ``after``
past the entry, through the outbox, after that transaction commits — and
only if the lead (the deal) is still in that stay (the same status, entered
at the same time): a step whose lead has moved on is dropped, with the
reason, never run.

- ``task``: a task for the lead's owner (its title a template);
- ``email``: a template to the owner, the owners of a role, a fixed address,
  or the **contact** — the acknowledgement an enquirer gets ("Ana will call
  you within a day"), marked ``Auto-Submitted: auto-replied``, threaded under
  the enquiry, at most once per contact and template in ``once_per``, never
  to a no-reply, bounce or owner address (mail that is an auto-reply, a
  bounce or a list's never makes a lead);
- ``assign``: the lead to the rotation's next owner of a role;
- ``set``: fields set, by automation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping

from leadtap.core.rules.durations import span

STEP_KINDS = ("task", "email", "assign", "set")
OWNER, CONTACT, ROLE = "owner", "contact", "role:"
SENDERS = ("smtp", "owner")  # whose address a contact's email comes from
ONCE_PER = timedelta(days=30)  # a contact gets one email of a template in this long, by default
TOO_LATE = timedelta(days=3)  # a step not run this long after it was due (leadtap stopped, the workflow off) is dropped
# Local parts nobody reads, and no one may be written to automatically (RFC 3834 §2: never to a robot).
NO_REPLY_RE = re.compile(
    r"(?:^|[._+-])(?:no[._-]?reply|do[._-]?not[._-]?reply|bounces?|mailer[._-]?daemon|postmaster|"
    r"notifications?|auto[._-]?reply|daemon)(?:$|[._+-])", re.IGNORECASE)


@dataclass(frozen=True)
class Step:
    """One step of a status's workflow; which fields count depends on ``kind``."""

    kind: str  # task | email | assign | set
    after: timedelta = timedelta(0)  # past the lead's entry; it must still be in the status then
    title: str | None = None  # task: a template rendered with the lead
    due: timedelta = timedelta(0)  # task: due this long after it is made
    to: str | None = None  # email: owner | contact | role:NAME | an address
    template: str | None = None  # email: the template's name (NAME.subject.j2, NAME.txt.j2, NAME.html.j2)
    once_per: timedelta = ONCE_PER  # email to the contact: one of this template per contact in this long
    sender: str = "smtp"  # email to the contact: from [smtp] from, or from the owner
    reply_to: str | None = None  # email to the contact: "owner" or an address
    role: str | None = None  # assign: the role whose rotation takes the lead
    values: Mapping[str, str] = field(default_factory=dict)  # set: field = value

    @property
    def fingerprint(self) -> str:
        """What the step is, in 16 hex digits: a row owed for a step the config has since changed is not run."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    @property
    def to_contact(self) -> bool:
        return self.kind == "email" and self.to == CONTACT

    @property
    def sends(self) -> bool:
        return self.kind == "email"

    def describe(self) -> str:
        """The step in a line: ``email the contact (acknowledgement) after 0 min``."""
        what = {
            "task": lambda: f"task {self.title!r}",
            "email": lambda: f"email {self.to if self.to != CONTACT else 'the contact'} ({self.template})",
            "assign": lambda: f"assign to the {self.role} rotation",
            "set": lambda: "set " + ", ".join(f"{k}={v}" for k, v in self.values.items()),
        }[self.kind]()
        return f"{what} after {span(self.after)}" if self.after else what


@dataclass(frozen=True)
class Stay:
    """Where the lead (or its deal) is now, as a step's row is checked against it."""

    status: str  # the lead's status, or the deal's stage
    entered_at: datetime
    deal: bool = False


def too_late(due_at: datetime, now: datetime) -> str | None:
    """A step that could not run for days (leadtap stopped, the workflow turned off) is not run late."""
    if now - due_at > TOO_LATE:
        return f"due {due_at:%Y-%m-%d %H:%M} UTC, more than {span(TOO_LATE)} ago: too late to run"
    return None


def moved_on(step_status: str, step_stay: datetime, lead: Stay | None) -> str | None:
    """Why a step owed on entering ``step_status`` at ``step_stay`` no longer
    runs, or None. A closed status (or stage) runs its steps as an open one:
    as long as the lead (the deal) is still in it."""
    what = "the deal" if lead is not None and lead.deal else "the lead"
    if lead is None:
        return "the lead (or its deal) is gone"
    if lead.status != step_status:
        return f"{what} moved on to {lead.status}"
    if lead.entered_at != step_stay:
        return f"{what} left {step_status} and came back: the new stay has its own steps"
    return None


def contact_refused(address: str | None, owners: set[str], own: set[str]) -> str | None:
    """Why a contact's address gets no automatic email, or None: none, a
    robot's (no-reply, bounces, postmaster), an owner's, leadtap's own."""
    if not address or "@" not in address:
        return "the lead has no email address"
    address = address.strip().lower()
    local = address.rpartition("@")[0]
    if address in owners:
        return f"{address} is an owner"
    if address in own:
        return f"{address} is leadtap's own address"
    if NO_REPLY_RE.search(local):
        return f"{address} reads no mail (a no-reply or robot address)"
    return None


def reply_subject(subject: str | None) -> str:
    """The enquiry's subject as an answer's: one ``Re:``, never ``Re: Re:``."""
    subject = (subject or "").strip()
    return subject if re.match(r"(?i)re\s*:", subject) else f"Re: {subject}" if subject else ""
