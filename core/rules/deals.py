"""Deals: an opportunity's stages, who may move it, when it has sat too long,
and the hand-off to onboarding when it is won.

Plain code: no SQL, no clock, no I/O. The rules follow deal-stage practice
(PRODUCT.md C): few stages; a closed-lost reason from a fixed list with an
"other" that needs free text; fields required to enter a stage; a staleness
policy (how long a deal may be open, sit in one stage, or go without
activity) past which it is closed lost; and on won, an onboarding hand-off
assigned in turn among the onboarding staff, with its tasks.

- a stage outside the list, or the stage it is at, is refused;
- entering a stage needs its required fields (given with the move, or set
  before); ``amount`` must be a number and ``close_date`` a date;
- lost needs a reason from ``lost_reasons`` (the "other" reason, a note too);
- a closed deal (won or lost) is changed by admins only;
- a stale deal's owner is warned ``warn_before`` ahead, and it is closed
  lost (reason ``Stale``) no earlier than that long after the warning: no
  deal is closed without its owner having been told first;
- only a configured open stage goes stale: a deal in a stage since renamed
  or removed is left to a person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Mapping

from leadtap.core.rules.durations import span
from leadtap.core.rules.lifecycle import (AUTOMATED, Actor, AutomationBlocked, Change, Refused, StageChanged,
                                          StepsOwed, TaskTemplate, carried_reason, check_reason)
from leadtap.core.rules.workflows import Step

NUMBER_RE = re.compile(r"-?\d+(?:[.,]\d+)?")
STALE = "Stale"


# --- the rules ---------------------------------------------------------------


@dataclass(frozen=True)
class Staleness:
    """How long a deal may stay open, stay in one stage, go without activity."""

    max_open: timedelta | None = None
    max_in_stage: Mapping[str, timedelta] = field(default_factory=dict)
    max_idle: timedelta | None = None
    warn_before: timedelta = timedelta(0)
    reason: str = STALE

    @property
    def enabled(self) -> bool:
        return bool(self.max_open or self.max_in_stage or self.max_idle)


@dataclass(frozen=True)
class Onboarding:
    """On won: a hand-off to ``role``, in its own rotation, with tasks."""

    role: str
    tasks: tuple[TaskTemplate, ...] = ()
    template: str = "onboarding_assigned"


MOVE_EVENTS = ("outreach", "reply", "mail")  # mail: a third party's (an e-signature service) about the contact


@dataclass(frozen=True)
class MailFacts:
    """What a move on mail matches: the sender's address, the subject, the attachments' file names."""

    sender: str
    subject: str
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailMove:
    """``[[opportunities.moves]]``: on this mail event, when it matches, the
    lead's open deal moves to ``to`` (forward only, by automation). A pattern
    is a glob, ignoring case, with ``|`` between alternatives."""

    on: str
    to: str
    sender: str | None = None
    subject: str | None = None
    attachment: str | None = None

    def matches(self, on: str, facts: MailFacts) -> bool:
        return (on == self.on and glob(self.sender, facts.sender) and glob(self.subject, facts.subject)
                and (self.attachment is None or any(glob(self.attachment, name) for name in facts.attachments)))


def glob(pattern: str | None, value: str) -> bool:
    if pattern is None:
        return True
    return any(fnmatchcase(value.lower(), alternative.strip().lower()) for alternative in pattern.split("|"))


@dataclass(frozen=True)
class DealRules:
    stages: tuple[str, ...]
    won: str | None = None
    lost: str | None = None
    lost_reasons: tuple[str, ...] = ()
    other_reason: str | None = None
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    staleness: Staleness = Staleness()
    onboarding: Onboarding | None = None
    moves: tuple[MailMove, ...] = ()
    steps: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)  # a stage's workflow

    @property
    def closed(self) -> tuple[str, ...]:
        return tuple(s for s in (self.won, self.lost) if s)

    def is_open(self, stage: str) -> bool:
        return stage not in self.closed

    @property
    def open_stages(self) -> tuple[str, ...]:
        """The configured stages a deal can go stale in: a stage no longer
        configured (renamed, removed) is left to a person, never closed."""
        return tuple(s for s in self.stages if self.is_open(s))

    @property
    def first(self) -> str:
        return self.stages[0]


# --- the deal ------------------------------------------------------------------


@dataclass(frozen=True)
class Deal:
    """What the rules need to know of a deal (an opportunity)."""

    id: int
    lead_id: int
    stage: str
    created_at: datetime
    stage_changed_at: datetime
    last_activity_at: datetime  # its lead's: mail either way, a note, a change
    fields: Mapping[str, str] = field(default_factory=dict)
    has_onboarding: bool = False
    warned_for: datetime | None = None  # the deadline its owner was last warned of
    warned_at: datetime | None = None


@dataclass(frozen=True)
class Limit:
    """The first staleness limit a deal reaches: when, and which, in words."""

    at: datetime
    words: str


# --- what happened -----------------------------------------------------------


@dataclass(frozen=True)
class DealFieldsSet:
    values: Mapping[str, str]


@dataclass(frozen=True)
class OnboardingNeeded:
    pass


@dataclass(frozen=True)
class DealWarned:
    """The owner is told the deal closes at ``closes_at`` unless something
    happens: its limit, or ``warn_before`` from now when the limit is past."""

    limit: Limit
    closes_at: datetime


@dataclass(frozen=True)
class ClosedStale:
    """Closed lost by the staleness policy: the owner is told."""

    limit: Limit


# --- the changes -------------------------------------------------------------


def move(deal: Deal, to: str, rules: DealRules, actor: Actor, now: datetime, reason: str | None = None,
         note: str | None = None, values: Mapping[str, str] | None = None) -> Change:
    """The deal to stage ``to``; ``values`` are deal fields set with it."""
    values = {name: value.strip() for name, value in (values or {}).items()}
    check_move(deal, to, rules, actor, reason, note, values)
    events: list = [DealFieldsSet(values)] if values else []
    kept_reason = reason if to == rules.lost else None
    events.append(StageChanged(deal.stage, to, kept_reason, note.strip() if note and note.strip() else None))
    if to == rules.won and rules.onboarding and not deal.has_onboarding:
        events.append(OnboardingNeeded())
    events += entered_stage(to, rules)
    return Change(deal.lead_id, actor, now, tuple(events))


def entered_stage(to: str, rules: DealRules) -> list:
    """What entering a stage owes besides the move: its workflow's steps."""
    return [StepsOwed(to, deal=True)] if rules.steps.get(to) else []


def on_mail(deal: Deal, event: str, facts: MailFacts, rules: DealRules, now: datetime) -> Change | None:
    """The move the first matching ``[[opportunities.moves]]`` makes on a
    mail event: forward of the deal's stage only, an open deal in a
    configured stage only; a field the stage requires missing, the change
    says so (``AutomationBlocked``) and the deal stays."""
    if not rules.is_open(deal.stage) or deal.stage not in rules.stages:
        return None
    for mail_move in rules.moves:
        if not mail_move.matches(event, facts):
            continue
        if rules.stages.index(mail_move.to) <= rules.stages.index(deal.stage):
            return None  # the first that matches decides: never back, never a later rule's stage instead
        missing = tuple(name for name in rules.required.get(mail_move.to, ()) if not deal.fields.get(name))
        if missing:
            return Change(deal.lead_id, AUTOMATED, now, (AutomationBlocked(event, mail_move.to, missing, deal=True),))
        return move(deal, mail_move.to, rules, AUTOMATED, now)
    return None


def lost_with_lead(deal: Deal, rules: DealRules, disqualified_for: str | None, note: str | None,
                   now: datetime) -> Change | None:
    """The lead was disqualified: its open deal closes lost, by automation —
    as the staleness policy closes one, past the stage's required fields and
    reason rules, which are a person's to meet. The reason is the lead's when
    it is a lost reason too, else the "other" reason (or none); the note says
    the lead's reason and the person's note. None: the deal is closed
    already, or there is no lost stage."""
    if rules.lost is None or not rules.is_open(deal.stage):
        return None
    reason, said = carried_reason("the lead was disqualified", disqualified_for, note, rules.lost_reasons,
                                  rules.other_reason)
    return Change(deal.lead_id, AUTOMATED, now,
                  (StageChanged(deal.stage, rules.lost, reason, said), *entered_stage(rules.lost, rules)))


def check_move(deal: Deal, to: str, rules: DealRules, actor: Actor, reason: str | None, note: str | None,
               values: Mapping[str, str]) -> None:
    where = f"deal {deal.id}"
    if to not in rules.stages:
        raise Refused(f"{where}: {to!r} is not a stage; expected one of {', '.join(rules.stages)}")
    if to == deal.stage:
        raise Refused(f"{where} is already at {to}")
    if not rules.is_open(deal.stage) and not actor.admin:
        raise Refused(f"{where} is {deal.stage}: only an admin can change a closed deal")
    check_values(values, where)
    missing = [name for name in rules.required.get(to, ()) if not (values.get(name) or deal.fields.get(name))]
    if missing:
        raise Refused(f"{where}: {to} needs {', '.join(missing)} (--field NAME=VALUE)")
    if to == rules.lost:
        check_reason(to, rules.lost_reasons, rules.other_reason, reason, note, where)
    elif reason is not None:
        raise Refused(f"{where}: a reason goes with {rules.lost or 'a lost stage'} only")


def check_values(values: Mapping[str, str], where: str) -> None:
    for name, value in values.items():
        if not name:
            raise Refused(f"{where}: a field needs a name")
        if name == "amount" and not NUMBER_RE.fullmatch(value):
            raise Refused(f"{where}: amount {value!r} is not a number (e.g. 12000 or 12000.50)")
        if name == "close_date":
            try:
                date.fromisoformat(value)
            except ValueError:
                raise Refused(f"{where}: close_date {value!r} is not a date (e.g. 2026-12-01)") from None


# --- staleness -----------------------------------------------------------------


def first_limit(deal: Deal, staleness: Staleness) -> Limit | None:
    """The earliest of the deal's staleness limits, or None when none applies."""
    limits = []
    if staleness.max_open:
        limits.append(Limit(deal.created_at + staleness.max_open, f"open for {span(staleness.max_open)}"))
    in_stage = staleness.max_in_stage.get(deal.stage)
    if in_stage:
        limits.append(Limit(deal.stage_changed_at + in_stage, f"in {deal.stage} for {span(in_stage)}"))
    if staleness.max_idle:
        limits.append(Limit(deal.last_activity_at + staleness.max_idle,
                            f"without activity for {span(staleness.max_idle)}"))
    return min(limits, key=lambda limit: limit.at) if limits else None


def stale_step(deal: Deal, rules: DealRules, now: datetime) -> Change | None:
    """What the staleness policy does to an open deal now: warn its owner
    (once per deadline), close it lost once the warning has had its time,
    or nothing."""
    staleness = rules.staleness
    if deal.stage not in rules.open_stages or rules.lost is None:
        return None
    limit = first_limit(deal, staleness)
    if limit is None or now < limit.at - staleness.warn_before:
        return None
    warned = deal.warned_for == limit.at and deal.warned_at is not None
    if staleness.warn_before and not warned:
        return Change(deal.lead_id, AUTOMATED, now, (DealWarned(limit, max(limit.at, now + staleness.warn_before)),))
    if now < closing_time(deal, limit, staleness):
        return None
    return Change(deal.lead_id, AUTOMATED, now,
                  (StageChanged(deal.stage, rules.lost, staleness.reason,
                                f"closed by the staleness policy: {limit.words}"),
                   ClosedStale(limit), *entered_stage(rules.lost, rules)))


def closing_time(deal: Deal, limit: Limit, staleness: Staleness) -> datetime:
    """When the policy closes the deal at ``limit``: then, but never sooner
    than ``warn_before`` after its owner was warned of it."""
    if deal.warned_for == limit.at and deal.warned_at is not None:
        return max(limit.at, deal.warned_at + staleness.warn_before)
    return limit.at


def amount(text: str | None) -> float | None:
    """A deal's amount as a number (a comma as the decimal sign too), or None."""
    if not text or not NUMBER_RE.fullmatch(text.strip()):
        return None
    return float(text.strip().replace(",", "."))
