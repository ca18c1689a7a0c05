"""The mail leadtap sends on its own: the ``[reminders]`` table (sweep, time
zone, business hours, digest and the reminder rules, checked against the
statuses and roles of the rest of the configuration) and ``[notifications]``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadtap.core.config.values import Section, check_unique, parse_seconds


TEMPLATE_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_RE = re.compile(
    r"(?i)(mon|tue|wed|thu|fri|sat|sun)[a-z]*(?:\s*-\s*(mon|tue|wed|thu|fri|sat|sun)[a-z]*)?"
    r"\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})"
)


@dataclass(frozen=True)
class BusinessHours:
    """Weekdays (0 = Monday) and a daily window, e.g. "Mon-Fri 08:00-18:00"."""

    spans: tuple[tuple[frozenset[int], time, time], ...]

    def contains(self, moment: datetime) -> bool:
        """``moment`` must already be in the reminders' timezone."""
        return any(
            moment.weekday() in days and start <= moment.time() < end for days, start, end in self.spans
        )

    def next_opening(self, moment: datetime) -> datetime:
        """When the hours next open after ``moment`` (in the reminders' timezone)."""
        openings = [
            datetime.combine(moment.date() + timedelta(days=ahead), start, moment.tzinfo)
            for ahead in range(8) for days, start, _ in self.spans
            if (moment.weekday() + ahead) % 7 in days
        ]
        # a wall time a clock change skips or repeats: as the zone reads it, once through UTC
        real = [at.astimezone(timezone.utc).astimezone(moment.tzinfo) for at in openings]
        return min(at for at in real if at > moment)


RULE_KINDS = ("status", "task")
WHILE_AWAY = ("escalate", "wait")
DEFAULT_TEMPLATES = {"status": "stale_lead", "task": "task_overdue"}


@dataclass(frozen=True)
class ReminderRule:
    """``kind = "status"``: a lead left ``after`` in ``status``; ``kind = "task"``:
    an open task ``after`` past its due time."""

    name: str
    after: timedelta
    status: str | None = None
    kind: str = "status"
    template: str = "stale_lead"
    enabled: bool = True
    repeat_every: timedelta | None = None
    escalate_after: int | None = None
    escalate_to_role: str | None = None
    reassign_after: int | None = None  # at this reminder of a stay the lead goes to the rotation's next owner
    pipeline: str | None = None  # only leads of this pipeline (None: of every pipeline with ``status``)
    pipeline_key: str | None = None  # its leads' pipeline column (None: the default pipeline's)

    @property
    def for_tasks(self) -> bool:
        return self.kind == "task"


@dataclass(frozen=True)
class RemindersConfig:
    sweep_every: timedelta = timedelta(minutes=15)
    timezone: str = "UTC"
    business_hours: BusinessHours | None = None
    digest: bool = False
    templates_dir: str | None = None
    lead_url: str | None = None
    rules: tuple[ReminderRule, ...] = ()
    while_away: str = "escalate"  # an away owner's reminders: to the escalation role, or wait until they are back

    def link(self, lead_id: int | None) -> str | None:
        """The lead's page in the team's CRM (``lead_url`` with its id), for every email that names it."""
        return self.lead_url.replace("{id}", str(lead_id)) if self.lead_url and lead_id is not None else None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class NotificationsConfig:
    new_lead: str | None = None  # the template emailed to an owner when a lead becomes theirs
    send_every: timedelta = timedelta(seconds=30)  # how often `leadtap run` sends what is owed
    max_attempts: int = 8  # a notification refused this often (4xx, timeouts) is given up

    @property
    def enabled(self) -> bool:
        return self.new_lead is not None


def parse_notifications(s: "Section") -> NotificationsConfig:
    values = s.take({"new_lead": str, "send_every": parse_seconds, "max_attempts": int})
    if "new_lead" in values and not TEMPLATE_NAME_RE.fullmatch(values["new_lead"]):
        s.fail("new_lead", "a template name (letters, digits, _ and -) is expected")
    if "send_every" in values:
        values["send_every"] = timedelta(seconds=values["send_every"])
    if values.get("max_attempts", 1) < 1:
        s.fail("max_attempts", "a whole number of at least 1 is expected")
    return NotificationsConfig(**values)


def parse_reminders(s: "Section", statuses: tuple[str, ...], closed: tuple[str, ...],
                    roles: set[str], pipelines: Mapping | None = None) -> RemindersConfig:
    """``statuses``, ``closed``: the leads' statuses (every pipeline's);
    ``roles``: those the owners hold; ``pipelines``: by name, for a rule's ``pipeline``."""
    rules_sections = s.array("rules")  # taken first: take() refuses keys it does not know
    values = s.take(
        {
            "sweep_every": parse_seconds,
            "timezone": str,
            "business_hours": parse_business_hours,
            "digest": bool,
            "templates_dir": str,
            "lead_url": str,
            "while_away": str,
        }
    )
    if values.get("while_away", "escalate") not in WHILE_AWAY:
        s.fail("while_away", f"{values['while_away']!r}: expected one of {list(WHILE_AWAY)}")
    if "sweep_every" in values:
        values["sweep_every"] = timedelta(seconds=values["sweep_every"])
    if "templates_dir" in values:  # relative to the config file, not to the working directory
        values["templates_dir"] = str(s.path.resolve().parent / values["templates_dir"])
    try:
        ZoneInfo(values.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        s.fail("timezone", f"unknown time zone {values['timezone']!r}; expected e.g. \"Europe/Vilnius\"")
    if "lead_url" in values and "{id}" not in values["lead_url"]:
        s.fail("lead_url", "a URL with {id} where the lead's id goes is expected")
    rules = tuple(parse_rule(r, statuses, closed, roles, pipelines or {}) for r in rules_sections)
    check_unique(s.path, "reminders.rules", "name", [r.name for r in rules])
    return RemindersConfig(rules=rules, **values)


def parse_rule(s: "Section", statuses: tuple[str, ...], closed: tuple[str, ...], roles: set[str],
               pipelines: Mapping) -> ReminderRule:
    values = s.take(
        {
            "name": str,
            "pipeline": str,
            "status": str,
            "after": parse_seconds,
            "template": str,
            "enabled": bool,
            "repeat_every": parse_seconds,
            "escalate_after": int,
            "escalate_to_role": str,
            "kind": str,
            "reassign_after": int,
        },
        required=("name", "after"),
    )
    kind = values.setdefault("kind", "status")
    if kind not in RULE_KINDS:
        s.fail("kind", f"{kind!r} is not one of {list(RULE_KINDS)}")
    if "pipeline" in values:
        pipeline = pipelines.get(values["pipeline"])
        if pipeline is None:
            s.fail("pipeline", f"unknown pipeline {values['pipeline']!r}; expected one of {list(pipelines)}")
        statuses, values["pipeline_key"] = pipeline.statuses, pipeline.key
    check_rule_kind(s, values, statuses, closed)
    for key in ("after", "repeat_every"):
        if key in values:
            values[key] = timedelta(seconds=values[key])
    if not TEMPLATE_NAME_RE.fullmatch(values.setdefault("template", DEFAULT_TEMPLATES[kind])):
        s.fail("template", "a template name (letters, digits, _ and -) is expected")
    if ("escalate_after" in values) != ("escalate_to_role" in values):
        s.fail("escalate_to_role", "escalate_after and escalate_to_role go together")
    if values.get("escalate_after", 1) < 1:
        s.fail("escalate_after", "a whole number of at least 1 is expected")
    if "escalate_to_role" in values and values["escalate_to_role"] not in roles:
        s.fail("escalate_to_role", f"no owner holds the role {values['escalate_to_role']!r}")
    return ReminderRule(**values)


def check_rule_kind(s: "Section", values: dict, statuses: tuple[str, ...], closed: tuple[str, ...]) -> None:
    """A status rule names an open status and may reassign; a task rule does neither."""
    if values["kind"] == "task":
        for key in ("status", "reassign_after"):
            if key in values:
                s.fail(key, "a task rule fires on any open task past its due time; "
                            f"{key} is for status rules")
        return
    if "status" not in values:
        s.fail("status", "this key is required (or kind = \"task\" for overdue tasks)")
    if values["status"] not in statuses:
        s.fail("status", f"unknown status {values['status']!r}; expected one of {list(statuses)}")
    if values["status"] in closed:
        s.fail("status", f"{values['status']!r} is a closed status; reminders are for open leads")
    if values.get("reassign_after", 1) < 1:
        s.fail("reassign_after", "a whole number of at least 1 is expected")
    if values.get("reassign_after", 1) > 1 and "repeat_every" not in values:
        s.fail("reassign_after", "a stay gets one reminder without repeat_every, so only reassign_after = 1 "
                                 "could ever fire; set repeat_every")


def parse_business_hours(value: Any) -> BusinessHours:
    """ "Mon-Fri 08:00-18:00" or several, comma-separated: "Mon-Fri 08:00-18:00, Sat 09:00-12:00". """
    if not isinstance(value, str) or not value.strip():
        raise ValueError('business hours such as "Mon-Fri 08:00-18:00" are expected')
    spans = []
    for part in value.split(","):
        match = HOURS_RE.fullmatch(part.strip())
        if not match:
            raise ValueError(f'{part.strip()!r} is not business hours; expected e.g. "Mon-Fri 08:00-18:00"')
        first, last, start, end = match.groups()
        days = weekday_range(first, last or first)
        start_time, end_time = clock_time(start), clock_time(end)
        if end_time <= start_time:
            raise ValueError(f"{part.strip()!r}: the end must come after the start")
        spans.append((days, start_time, end_time))
    return BusinessHours(tuple(spans))


def weekday_range(first: str, last: str) -> frozenset[int]:
    a, b = WEEKDAYS.index(first.lower()[:3]), WEEKDAYS.index(last.lower()[:3])
    return frozenset(range(a, b + 1)) if a <= b else frozenset(list(range(a, 7)) + list(range(0, b + 1)))


def clock_time(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)
