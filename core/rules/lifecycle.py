"""The lead lifecycle: whether a lead may change, and what a change does.

Plain code: no SQL, no clock, no I/O. Each change is one function that takes
the lead as it stands, the pipeline's rules, who acts and when, and returns
the events to record — or raises ``Refused`` with the rule's words. Nothing
else decides whether a move is allowed: the command line, ingest (mail that
shows outreach or a reply) and, later, commands by email all call these.

The rules follow the reference products (HubSpot's lead pipeline rules and
default automation, Hanna CRM's locked statuses and task templates):

- open statuses move forward in list order one step at a time when
  ``no_skipping``; closed statuses are always reachable;
- with ``no_going_back`` a lead never returns to an earlier status;
- a locked status is set by automation only;
- entering a status needs its required fields; ``disqualified`` needs a
  reason from the list (the "other" reason, a note too);
- a lead in ``qualified`` is changed by admins only when ``lock_converted``;
- admins (and the command line without ``--by``) are exempt from the order
  rules and the lock on converted leads; required fields and reasons apply
  to everyone, and a locked status is automation's alone;
- automation moves forward only, never out of a closed status, and never
  again a lead that a person moved back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Mapping

from leadtap.core.errors import LeadtapError
from leadtap.core.rules.model import valid_email
from leadtap.core.rules.workflows import Step

AUTOMATION = "automation"
CLI = "cli"
# What moves a lead by automation (a status's ``set_on``): mail, a call or
# meeting logged (``call:connected``, ``meeting:completed``), a deal's stage.
OUTCOMES = {
    "call": ("connected", "no-answer", "left-voicemail", "busy", "booked"),
    "meeting": ("booked", "completed", "no-show"),
    "contact": (),  # Hanna's note with a contact date: the contact was reached
}
CONNECTED = ("connected", "booked", "completed")  # a connection (HubSpot's Connected), as a reply is
EARLIEST_CONTACT = timedelta(days=7)  # a call logged may have come before the lead was entered, not long before
TRIGGERS = ("outreach", "reply", "call", "meeting", "contact",
            *(f"{kind}:{outcome}" for kind, outcomes in OUTCOMES.items() for outcome in outcomes))
# and "stage:<opportunity stage>"


class Refused(LeadtapError):
    """A change the rules do not allow; the message names the rule."""


# --- the rules ---------------------------------------------------------------


@dataclass(frozen=True)
class TaskTemplate:
    title: str  # a Jinja2 template rendered with the lead (by the adapter)
    due: timedelta


@dataclass(frozen=True)
class StatusOptions:
    name: str
    set_on: str | None = None  # outreach | reply | stage:<opportunity stage>
    locked: bool = False  # only automation sets it
    required: tuple[str, ...] = ()  # lead fields (or custom fields) that must be filled to enter
    tasks: tuple[TaskTemplate, ...] = ()
    steps: tuple[Step, ...] = ()  # its workflow (core.rules.workflows): run through the outbox


FIELD_TYPES = ("text", "number", "date", "choice")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
NUMBER_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)
CONTACT_FIELDS = ("name", "email", "phone", "company")  # the lead's own, not custom
REACHABLE = ("name", "email", "phone")  # a lead has one of them at least
RESERVED = ("source", "status", "owner")  # a lead's, set with their own options: never custom fields


@dataclass(frozen=True)
class FieldSpec:
    """A declared custom field (``[[leads.fields]]``): checked wherever a person sets it."""

    name: str
    type: str = "text"  # text | number | date | choice
    choices: tuple[str, ...] = ()

    def checked(self, value: str) -> str:
        """The value as stored (a choice in its declared spelling), or Refused."""
        if self.type == "number" and not is_number(value):
            raise Refused(f"{self.name} is a number, not {value!r}")
        if self.type == "date" and not is_date(value):
            raise Refused(f"{self.name} is a date (YYYY-MM-DD), not {value!r}")
        if self.type == "choice":
            chosen = next((c for c in self.choices if c.lower() == value.lower()), None)
            if chosen is None:
                raise Refused(f"{value!r} is not a choice of {self.name}: one of {', '.join(self.choices)}")
            return chosen
        return value


def is_number(value: str) -> bool:
    """``1200``, ``-3.5``, ``1,200.50``: digits, thousands in threes, one point."""
    return NUMBER_RE.fullmatch(value) is not None and math.isfinite(float(value.replace(",", "")))


def is_date(value: str) -> bool:
    try:
        return bool(DATE_RE.fullmatch(value)) and date.fromisoformat(value) is not None
    except ValueError:
        return False


@dataclass(frozen=True)
class FollowUp:
    reasons: tuple[str, ...]
    after: timedelta
    type: str | None = None  # the follow-up lead's type (HubSpot's Re-attempting), else the lead's


DEFAULT_PIPELINE = "default"  # the name of the pipeline [leads] and [pipeline] describe, unless [pipeline] name


@dataclass(frozen=True)
class Pipeline:
    statuses: tuple[str, ...]
    closed: tuple[str, ...] = ()
    default_status: str = ""
    no_skipping: bool = False
    no_going_back: bool = False
    admins: frozenset[str] = frozenset()
    qualified: str | None = None
    disqualified: str | None = None
    disqualify_reasons: tuple[str, ...] = ()
    other_reason: str | None = None
    lock_converted: bool = False
    follow_up: FollowUp | None = None
    options: Mapping[str, StatusOptions] = field(default_factory=dict)
    tasks_on_leave: str = "cancel"  # a status's open tasks when the lead leaves it: cancel | keep
    create_in: tuple[str, ...] = ()  # the statuses a lead is created in by hand (none given: any open one)
    required: tuple[str, ...] = ()  # fields a lead made or edited by hand must have (Hanna's mandatory fields)
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)  # declared custom fields
    name: str = DEFAULT_PIPELINE
    default: bool = True  # the default pipeline (its leads' pipeline column is empty); else a [[pipelines]] one

    @property
    def key(self) -> str | None:
        """What a lead of this pipeline holds in its ``pipeline`` column: nothing for the default one."""
        return None if self.default else self.name

    def option(self, status: str) -> StatusOptions:
        return self.options.get(status) or StatusOptions(status)

    def is_open(self, status: str) -> bool:
        return status not in self.closed

    def open_statuses(self) -> tuple[str, ...]:
        return tuple(s for s in self.statuses if s not in self.closed)

    def next_by_hand(self, status: str) -> str | None:
        """The open status a person moves ``status`` on to: the next in list
        order that automation does not own (a locked one is passed over)."""
        opened = self.open_statuses()
        if status not in opened:
            return None
        for following in opened[opened.index(status) + 1 :]:
            if not self.option(following).locked:
                return following
        return None

    def position(self, status: str) -> int | None:
        """Where ``status`` stands; None for a status no longer configured."""
        return self.statuses.index(status) if status in self.statuses else None

    def set_on(self, trigger: str) -> str | None:
        """The status automation moves a lead to on ``trigger``, if any."""
        for status in self.statuses:
            if self.option(status).set_on == trigger:
                return status
        return None


def won_deals_qualify(pipeline: Pipeline, won_stage: str | None) -> Pipeline:
    """The lead and its deal tell one story: a deal won moves its lead to the
    qualified status, by automation (forward only, as every automated move),
    unless the config already sets a status on that stage."""
    if not pipeline.qualified or not won_stage or pipeline.set_on(f"stage:{won_stage}") is not None:
        return pipeline
    option = pipeline.option(pipeline.qualified)
    if option.set_on is not None:
        return pipeline
    options = {**pipeline.options, pipeline.qualified: replace(option, set_on=f"stage:{won_stage}")}
    return replace(pipeline, options=options)


# --- the lead, and who acts --------------------------------------------------


@dataclass(frozen=True)
class LeadState:
    """What the rules need to know of a lead."""

    id: int
    status: str
    owner: str | None = None  # the owner's email
    fields: Mapping[str, str | None] = field(default_factory=dict)  # name, email, phone, company + custom fields
    has_opportunity: bool = False
    automation_stopped: bool = False  # a person moved it back: automation leaves it alone
    had_outreach: bool = False
    snoozed_until: datetime | None = None
    blocked: str | None = None  # why automation last could not move it
    source: str | None = None
    came_in: datetime | None = None  # when its first message came (or it was entered)
    type: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who makes a change (an owner's email, ``cli`` or ``automation``) and how."""

    who: str
    how: str  # cli | mail | rule
    admin: bool = False

    @property
    def is_automation(self) -> bool:
        return self.who == AUTOMATION


def actor_for(who: str | None, pipeline: Pipeline, how: str = "cli") -> Actor:
    """``--by EMAIL`` names an owner, to whom the rules apply unless an admin;
    without it the command line acts, as an admin."""
    if who is None:
        return Actor(CLI, how, admin=True)
    email = who.strip().lower()
    return Actor(email, how, admin=email in pipeline.admins)


AUTOMATED = Actor(AUTOMATION, "rule", admin=False)


# --- what happened -----------------------------------------------------------


@dataclass(frozen=True)
class StatusChanged:
    old: str
    new: str
    reason: str | None = None
    note: str | None = None
    moved_back: bool = False  # by a person, to an earlier status: automation stops for this lead


@dataclass(frozen=True)
class Created:
    """A lead entered by hand (a phone enquiry, a card from a fair)."""

    status: str
    source: str
    owner: str | None
    assigned_by: str  # rotation | hand | nobody


@dataclass(frozen=True)
class ContactLogged:
    """A call or meeting a person logs: a call made is outreach; a call
    connected, a meeting booked or held is a connection."""

    kind: str  # call | meeting
    outcome: str | None
    at: datetime
    note: str | None = None

    @property
    def summary(self) -> str:
        said = f"{self.kind}: {self.outcome}" if self.outcome else self.kind
        return f"{said} — {self.note}" if self.note else said


@dataclass(frozen=True)
class FieldsSet:
    values: Mapping[str, str]


@dataclass(frozen=True)
class ColumnChanged:
    """One of the lead's own values set with its own option: its source, its type."""

    column: str  # source | type
    old: str | None
    new: str


@dataclass(frozen=True)
class TaskDue:
    title: str  # a template the adapter renders with the lead, unless ``literal``
    due_at: datetime
    literal: bool = False
    status: str | None = None  # the status whose template made it (None: by hand)


@dataclass(frozen=True)
class StepsOwed:
    """The lead entered ``status`` (its deal, with ``deal``, the stage): the
    workflow's steps are owed, each at its ``after``."""

    status: str
    deal: bool = False


@dataclass(frozen=True)
class OpenTasksCancelled:
    """The lead closed: all its open tasks are cancelled."""


@dataclass(frozen=True)
class StatusTasksCancelled:
    """The lead left ``status``: the open tasks its template made are cancelled."""

    status: str


@dataclass(frozen=True)
class AutomationBlocked:
    """Automation would have moved the lead on ``trigger`` but for a missing
    field (or reason): said on the lead, and in its owner's next email."""

    trigger: str
    to: str
    missing: tuple[str, ...]
    deal: bool = False  # the lead's deal, to that stage

    @property
    def why(self) -> str:
        return f"{'deal ' if self.deal else ''}not moved to {self.to}: needs {', '.join(self.missing)}"

    @property
    def summary(self) -> str:
        return f"{trigger_words(self.trigger)}; {self.why}"


def trigger_words(trigger: str) -> str:
    if trigger.startswith("stage:"):
        return f"deal moved to {trigger.removeprefix('stage:')}"
    kind, _, outcome = trigger.partition(":")
    if kind in OUTCOMES:
        return f"{kind} ({outcome}) logged" if outcome else f"{kind} logged"
    return {"outreach": "outreach sent", "reply": "reply received", "mail": "mail received"}.get(trigger, trigger)


@dataclass(frozen=True)
class OpportunityNeeded:
    pass


@dataclass(frozen=True)
class FollowUpLead:
    snoozed_until: datetime
    type: str | None = None


@dataclass(frozen=True)
class DealLost:
    """The lead was disqualified: its open deal closes lost, for this reason (and note)."""

    reason: str | None
    note: str | None = None


@dataclass(frozen=True)
class OwnerChanged:
    old: str | None
    new: str


@dataclass(frozen=True)
class StageChanged:
    """The lead's opportunity entered another stage (``core.rules.deals``)."""

    old: str
    new: str
    reason: str | None = None  # why it was lost
    note: str | None = None


@dataclass(frozen=True)
class NoteAdded:
    text: str


@dataclass(frozen=True)
class Snoozed:
    until: datetime


@dataclass(frozen=True)
class Change:
    """The events of one change, in order, and who made it when."""

    lead_id: int
    actor: Actor
    at: datetime
    events: tuple = ()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


# --- the changes -------------------------------------------------------------


def create(lead: LeadState, source: str, sources: tuple[str, ...], pipeline: Pipeline, actor: Actor, now: datetime,
           assigned_by: str, opportunity: bool = False) -> Change:
    """A lead a person enters by hand (``lead``: its fields, status and owner;
    its id 0 until it is written): the fields it needs, a source from the
    list, an open status a lead may be created in and a person may set;
    entering that status brings its tasks as a move would, and
    ``opportunity`` (``[opportunities] auto_create``) its deal, as mail does."""
    check_new(lead, source, sources, pipeline, actor)
    events: list = [Created(lead.status, source, lead.owner, assigned_by)]
    events += [OpportunityNeeded()] if opportunity else []
    events += entered(replace(lead, has_opportunity=opportunity), lead.status, pipeline, now, None)
    return Change(lead.id, actor, now, tuple(events))


def check_new(lead: LeadState, source: str, sources: tuple[str, ...], pipeline: Pipeline, actor: Actor) -> None:
    fields, status = normalized(lead.fields, pipeline), lead.status
    if not any(fields.get(name) for name in REACHABLE):
        raise Refused("a lead needs a name, an email or a phone")
    check_source(source, sources)
    if status not in pipeline.statuses:
        raise Refused(f"unknown status {status!r}; expected one of {', '.join(pipeline.statuses)}")
    option = pipeline.option(status)
    if option.locked and not actor.is_automation:
        raise Refused(f"{status} is set automatically (on {option.set_on})")
    allowed = [name for name in (pipeline.create_in or pipeline.open_statuses())
               if actor.is_automation or not pipeline.option(name).locked]
    if status not in allowed or not pipeline.is_open(status):
        raise Refused(f"a lead is created in {' or '.join(allowed)}, not {status}")
    missing = [name for name in dict.fromkeys((*pipeline.required, *option.required)) if not fields.get(name)]
    if missing:
        raise Refused(f"a new lead needs {', '.join(missing)}")


def normalized(values: Mapping[str, str], pipeline: Pipeline, where: str = "") -> dict[str, str]:
    """Fields a person sets, checked: no name that is not a field (source,
    status, owner), an email address, each declared field's type (a choice in
    its declared spelling). An empty value clears the field."""
    prefix = f"{where}: " if where else ""
    canonical = {known.casefold(): known for known in (*CONTACT_FIELDS, *pipeline.fields)}
    checked = {}
    for given, value in values.items():
        value = (value or "").strip()
        if given.strip().casefold() in RESERVED:
            raise Refused(f"{prefix}{given.strip()} is not a custom field: give it as --{given.strip().casefold()}")
        name = canonical.get(given.strip().casefold(), given.strip())  # Email, SEATS: the field itself
        if name == "email" and value and not valid_email(value):
            raise Refused(f"{prefix}{value!r} is not an email address")
        spec = pipeline.fields.get(name)
        try:
            checked[name] = spec.checked(value) if spec and value else value
        except Refused as exc:
            raise Refused(f"{prefix}{exc}") from None
    return checked


def check_type(lead_type: str, types: tuple[str, ...]) -> None:
    if not types:
        raise Refused("leads have no types: [leads] types names them")
    check_one_of("type", lead_type, types)


def check_source(source: str, sources: tuple[str, ...]) -> None:
    check_one_of("source", source, sources)


def check_one_of(what: str, value: str, names: tuple[str, ...]) -> None:
    if value not in names:
        raise Refused(f"unknown {what} {value!r}; expected one of {', '.join(names)}")


def edit(lead: LeadState, values: Mapping[str, str], source: str | None, sources: tuple[str, ...],
         pipeline: Pipeline, actor: Actor, now: datetime, lead_type: str | None = None,
         types: tuple[str, ...] = ()) -> Change:
    """Fields (and the source) changed without a status move, by the same
    rights as a move: a converted lead is an admin's when locked; a field the
    pipeline or the lead's status requires is never cleared."""
    where = f"lead {lead.id}"
    check_converted(lead, pipeline, actor, where)
    values = normalized(values, pipeline, where)
    required = (*pipeline.required, *pipeline.option(lead.status).required)
    cleared = [name for name in dict.fromkeys(required) if name in values and not values[name]]
    if cleared:
        raise Refused(f"{where}: {', '.join(cleared)} cannot be cleared: {lead.status} needs it")
    changed = {name: value for name, value in values.items() if value != (lead.fields.get(name) or "")}
    after = {**lead.fields, **changed}
    if changed and not any(after.get(name) for name in REACHABLE):
        raise Refused(f"{where}: a lead keeps a name, an email or a phone")
    events: list = [FieldsSet(changed)] if changed else []
    if source is not None:
        check_source(source, sources)
    if lead_type is not None:
        check_type(lead_type, types)
    events += [ColumnChanged(column, old, new) for column, old, new in
               (("source", lead.source, source), ("type", lead.type, lead_type)) if new is not None and new != old]
    if not events:
        raise Refused(f"{where}: nothing changes (the lead already has these values)")
    return Change(lead.id, actor, now, tuple(events))


def move(lead: LeadState, to: str, pipeline: Pipeline, actor: Actor, now: datetime, reason: str | None = None,
         note: str | None = None, values: Mapping[str, str] | None = None) -> Change:
    """A move to status ``to``; ``values`` are fields set with it (they count
    for the status's required fields)."""
    values = normalized(values or {}, pipeline, f"lead {lead.id}")
    check_move(lead, to, pipeline, actor, reason, note, values)
    events: list = []
    if values:
        events.append(FieldsSet(values))
    now_at = pipeline.position(lead.status)
    back = not actor.is_automation and now_at is not None and pipeline.statuses.index(to) < now_at
    events.append(StatusChanged(lead.status, to, reason, note, moved_back=back and pipeline.is_open(to)))
    if pipeline.is_open(to) and pipeline.tasks_on_leave == "cancel" and pipeline.option(lead.status).tasks:
        events.append(StatusTasksCancelled(lead.status))
    events += entered(lead, to, pipeline, now, reason, note)
    return Change(lead.id, actor, now, tuple(events))


def check_move(lead: LeadState, to: str, pipeline: Pipeline, actor: Actor, reason: str | None, note: str | None,
               values: Mapping[str, str]) -> None:
    where = f"lead {lead.id}"
    if to not in pipeline.statuses:
        raise Refused(f"{where}: unknown status {to!r}; expected one of {', '.join(pipeline.statuses)}")
    if to == lead.status:
        raise Refused(f"{where} is already {to}")
    option = pipeline.option(to)
    if option.locked and not actor.is_automation:
        raise Refused(f"{where}: {to} is set automatically (on {option.set_on})")
    if not actor.admin and not actor.is_automation:
        check_person_rules(lead, to, pipeline, actor, where)
    missing = missing_fields(lead, to, pipeline, values)
    if missing:
        raise Refused(f"{where}: {to} needs {', '.join(missing)}")
    if to == pipeline.disqualified:
        check_reason(to, pipeline.disqualify_reasons, pipeline.other_reason, reason, note, where)


def missing_fields(lead: LeadState, to: str, pipeline: Pipeline, values: Mapping[str, str]) -> list[str]:
    """The fields ``to`` requires that neither the lead nor ``values`` fills."""
    return [name for name in pipeline.option(to).required if not (values.get(name) or lead.fields.get(name))]


def check_converted(lead: LeadState, pipeline: Pipeline, actor: Actor, where: str) -> None:
    """A lead in ``qualified`` is changed by admins only when ``lock_converted``."""
    if not actor.admin and pipeline.lock_converted and lead.status == pipeline.qualified:
        raise Refused(f"{where} is {lead.status}: only an admin can change it")


def check_person_rules(lead: LeadState, to: str, pipeline: Pipeline, actor: Actor, where: str) -> None:
    check_converted(lead, pipeline, actor, where)
    if pipeline.position(lead.status) is None:
        raise Refused(f"{where} is {lead.status}, no longer a configured status: only an admin can move it")
    order = pipeline.statuses
    if pipeline.no_going_back and order.index(to) < order.index(lead.status):
        raise Refused(f"{where}: cannot move from {lead.status} back to {to}: no going back")
    if pipeline.no_skipping and pipeline.is_open(to) and order.index(to) > order.index(lead.status):
        following = pipeline.next_by_hand(lead.status)
        if to != following:
            after = f"next is {following}" if following else f"{lead.status} is the last open status"
            raise Refused(f"{where}: cannot move from {lead.status} to {to}: no skipping ({after})")


def check_reason(to: str, reasons: tuple[str, ...], other: str | None, reason: str | None, note: str | None,
                 where: str) -> None:
    """A reason from the list to enter ``to`` (a status, or a deal's lost stage); ``other`` needs a note."""
    if not reasons:
        return
    if reason is None:
        raise Refused(f"{where}: {to} needs a reason: one of {', '.join(reasons)}")
    if reason not in reasons:
        raise Refused(f"{where}: {reason!r} is not a reason for {to}: one of {', '.join(reasons)}")
    if reason == other and not (note and note.strip()):
        raise Refused(f"{where}: the reason {reason!r} needs a note saying what it was")


def entered(lead: LeadState, to: str, pipeline: Pipeline, now: datetime, reason: str | None,
            note: str | None = None) -> list:
    """What entering ``to`` brings: its tasks and workflow, an opportunity when qualified,
    a follow-up lead when disqualified for a follow-up reason, and the open
    tasks cancelled when the lead closes."""
    events: list = [TaskDue(task.title, now + task.due, status=to) for task in pipeline.option(to).tasks]
    events += [StepsOwed(to)] if pipeline.option(to).steps else []
    if to == pipeline.qualified and not lead.has_opportunity:
        events.append(OpportunityNeeded())
    if not pipeline.is_open(to):
        events.append(OpenTasksCancelled())
    if to == pipeline.disqualified and lead.has_opportunity:
        events.append(DealLost(reason, note))
    follow_up = pipeline.follow_up
    if to == pipeline.disqualified and follow_up and reason in follow_up.reasons:
        events.append(FollowUpLead(now + follow_up.after, follow_up.type))
    return events


def on_activity(lead: LeadState, trigger: str, pipeline: Pipeline, now: datetime, reason: str | None = None,
                note: str | None = None) -> Change | None:
    """The move automation makes on an activity (``outreach``, ``reply``,
    ``stage:<name>``, the deal's lost ``reason`` and ``note`` with it), or
    None: forward only, never out of a closed status, never for a lead a
    person moved back; a reply counts (HubSpot's *Connected*) only after
    outreach. When a required field (or a reason) is missing, the change
    says so (``AutomationBlocked``), once until something changes."""
    to = pipeline.set_on(trigger)
    if to is None or lead.automation_stopped or not pipeline.is_open(lead.status):
        return None
    if pipeline.position(lead.status) is None:  # a status no longer configured: a person decides
        return None
    if trigger == "reply" and not lead.had_outreach:
        return None
    if pipeline.statuses.index(to) <= pipeline.statuses.index(lead.status):
        return None
    if to == pipeline.disqualified:
        reason, note = disqualify_reason(pipeline, reason, note)
    missing = tuple(missing_fields(lead, to, pipeline, {}))
    if to == pipeline.disqualified and pipeline.disqualify_reasons and reason is None:
        missing += ("a reason",)
    if missing:
        blocked = AutomationBlocked(trigger, to, missing)
        return None if lead.blocked == blocked.summary else Change(lead.id, AUTOMATED, now, (blocked,))
    try:
        return move(lead, to, pipeline, AUTOMATED, now, reason, note)
    except Refused:  # no rule left that refuses automation; should one come, mail is still read
        return None


def disqualify_reason(pipeline: Pipeline, lost_for: str | None, note: str | None) -> tuple[str | None, str]:
    """A deal lost closes its lead: the lead's reason is the deal's when it is
    a disqualify reason too, else the "other" reason, with a note saying the
    deal's; None when neither is there."""
    return carried_reason("the deal was lost", lost_for, note, pipeline.disqualify_reasons, pipeline.other_reason)


def carried_reason(what: str, given: str | None, note: str | None, reasons: tuple[str, ...],
                   other: str | None) -> tuple[str | None, str]:
    """A reason carried between a lead and its deal, each with its own list:
    the same one when the other list has it too (in any case), else its
    "other" reason; and the note saying ``what`` happened, why, and the
    person's note."""
    said = f"{what}: {given}" if given else what
    said = f"{said} ({note.strip()})" if note and note.strip() else said
    same = next((r for r in reasons if given and r.lower() == given.lower()), None)
    return (same or other), said


def log_contact(lead: LeadState, kind: str, outcome: str | None, at: datetime, note: str | None,
                pipeline: Pipeline, actor: Actor, now: datetime) -> list[Change]:
    """A call or meeting, and the move automation makes on it: the status set
    on ``kind:outcome``, else on ``kind``, else — HubSpot's default — a
    connection moves it as a reply would, and a call made as outreach. A
    call, or a meeting held, is logged when it happened (not later than
    now); a meeting booked may be for a later day. Returns the person's
    change, then automation's (a move, or why it could not), if any."""
    where = f"lead {lead.id}"
    if kind not in OUTCOMES:
        raise Refused(f"{where}: log a call, a meeting or a contact, not {kind!r}")
    if outcome is not None and outcome not in OUTCOMES[kind]:
        raise Refused(f"{where}: {outcome!r} is not an outcome of a {kind}: "
                      f"{'one of ' + ', '.join(OUTCOMES[kind]) if OUTCOMES[kind] else 'it has none'}")
    if at > now and not (kind == "meeting" and outcome == "booked"):
        raise Refused(f"{where}: a {kind}{' ' + outcome if outcome else ''} is logged once it happened, "
                      f"not for {at:%Y-%m-%d %H:%M} UTC")
    if lead.came_in is not None and at < lead.came_in - EARLIEST_CONTACT:
        raise Refused(f"{where}: a {kind} on {at:%Y-%m-%d} is long before the lead came in "
                      f"({lead.came_in:%Y-%m-%d})")
    if not pipeline.is_open(lead.status):
        raise Refused(f"{where} is {lead.status}: a closed lead takes no calls, meetings or contacts")
    logged = ContactLogged(kind, outcome, at, note.strip() if note and note.strip() else None)
    logged_change = Change(lead.id, actor, now, (logged,))
    contacted = replace(lead, had_outreach=True)  # a call or meeting is contact: a reply's move may follow
    for trigger in contact_triggers(kind, outcome):
        if pipeline.set_on(trigger) is not None:
            moved = on_activity(contacted, trigger, pipeline, now)
            return [logged_change, moved] if moved else [logged_change]
    return [logged_change]


def contact_triggers(kind: str, outcome: str | None) -> list[str]:
    """The triggers a call, meeting or contact stands for, the most specific first."""
    connection = kind in ("meeting", "contact") or outcome in CONNECTED
    return [*([f"{kind}:{outcome}"] if outcome else []), kind, *(["reply"] if connection else []),
            *(["outreach"] if kind == "call" else [])]


def assign(lead: LeadState, owner: str, pipeline: Pipeline, actor: Actor, now: datetime) -> Change:
    """A new owner (an active owner's email, chosen by the caller)."""
    where = f"lead {lead.id}"
    check_converted(lead, pipeline, actor, where)
    if owner == lead.owner:
        raise Refused(f"{where} is already {owner}'s")
    return Change(lead.id, actor, now, (OwnerChanged(lead.owner, owner),))


def add_note(lead: LeadState, text: str, actor: Actor, now: datetime) -> Change:
    if not text.strip():
        raise Refused(f"lead {lead.id}: a note needs some text")
    return Change(lead.id, actor, now, (NoteAdded(text.strip()),))


def add_task(lead: LeadState, title: str, due_at: datetime, pipeline: Pipeline, actor: Actor, now: datetime) -> Change:
    """A task by hand, for the lead's owner; its title is text, not a template."""
    where = f"lead {lead.id}"
    if not title.strip():
        raise Refused(f"{where}: a task needs a title")
    if not pipeline.is_open(lead.status):
        raise Refused(f"{where} is {lead.status}: a closed lead takes no new tasks")
    return Change(lead.id, actor, now, (TaskDue(title.strip(), due_at, literal=True),))


def snooze(lead: LeadState, until: datetime, pipeline: Pipeline, actor: Actor, now: datetime) -> Change:
    """No reminders for the lead until then; any activity ends a snooze."""
    where = f"lead {lead.id}"
    if until <= now:
        raise Refused(f"{where}: a snooze must end in the future, not {until.isoformat()}")
    if not pipeline.is_open(lead.status):
        raise Refused(f"{where} is {lead.status}: a closed lead gets no reminders to snooze")
    return Change(lead.id, actor, now, (Snoozed(until),))
