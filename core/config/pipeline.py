"""The ``[pipeline]`` table and the ``[[statuses]]`` array: the lead
lifecycle's rules (``core.rules.lifecycle.Pipeline``), checked against the
statuses and owners of the rest of the configuration."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from leadtap.core.config.values import Section, list_of_str, parse_seconds
from leadtap.core.rules.lifecycle import TRIGGERS, FollowUp, Pipeline, StatusOptions, TaskTemplate

# A status's open tasks when the lead leaves it for another open status: cancelled, or kept open.
TASKS_ON_LEAVE = ("cancel", "keep")


def parse_pipeline(s: Section, statuses_array: list[Section], statuses: tuple[str, ...], closed: tuple[str, ...],
                   default_status: str, owners: set[str], stages: tuple[str, ...] = (),
                   types: tuple[str, ...] = ()) -> Pipeline:
    values = s.take({
        "no_skipping": bool, "no_going_back": bool, "admins": list_of_str, "qualified": str, "disqualified": str,
        "disqualify_reasons": list_of_str, "other_reason": str, "lock_converted": bool, "follow_up": dict,
        "tasks_on_leave": str, "create_in": list_of_str,
    })
    for status in values.get("create_in", ()):
        check_status(s, "create_in", status, statuses)
        if status in closed:
            s.fail("create_in", f"{status!r} is closed: a lead is created in an open status")
    if values.get("tasks_on_leave", "cancel") not in TASKS_ON_LEAVE:
        s.fail("tasks_on_leave", f"{values['tasks_on_leave']!r}: expected one of {list(TASKS_ON_LEAVE)}")
    for key in ("qualified", "disqualified"):
        if key in values:
            check_status(s, key, values[key], statuses)
    if "disqualified" in values and values["disqualified"] not in closed:
        s.fail("disqualified", f"{values['disqualified']!r} must be a closed status (one of {list(closed)})")
    reasons = values.get("disqualify_reasons", ())
    if "other_reason" in values and values["other_reason"] not in reasons:
        s.fail("other_reason", f"{values['other_reason']!r} is not one of disqualify_reasons {list(reasons)}")
    if reasons and "disqualified" not in values:
        s.fail("disqualify_reasons", "reasons need a disqualified status: set disqualified = \"...\"")
    admins = frozenset(a.strip().lower() for a in values.get("admins", ()))
    for admin in sorted(admins - owners):
        s.fail("admins", f"{admin!r} is not an owner; admins are owners' emails")
    follow_up = parse_follow_up(s, values["follow_up"], reasons, types) if "follow_up" in values else None
    options = {}
    for section in statuses_array:
        option = parse_status(section, statuses, stages)
        if option.name in options:
            section.fail("name", f"{option.name!r} is configured twice")
        options[option.name] = option
    return Pipeline(
        statuses=statuses, closed=closed, default_status=default_status,
        no_skipping=values.get("no_skipping", False), no_going_back=values.get("no_going_back", False),
        admins=admins, qualified=values.get("qualified"), disqualified=values.get("disqualified"),
        disqualify_reasons=reasons, other_reason=values.get("other_reason"),
        lock_converted=values.get("lock_converted", False), follow_up=follow_up, options=options,
        tasks_on_leave=values.get("tasks_on_leave", "cancel"), create_in=values.get("create_in", ()),
    )


def parse_follow_up(s: Section, raw: dict, reasons: tuple[str, ...], types: tuple[str, ...]) -> FollowUp:
    table = Section(raw, s.path, s.where("follow_up"))
    values = table.take({"reasons": list_of_str, "after": parse_seconds, "type": str}, required=("reasons", "after"))
    if "type" in values and values["type"] not in types:
        table.fail("type", f"unknown type {values['type']!r}; expected one of {list(types)} ([leads] types)")
    for reason in values["reasons"]:
        if reason not in reasons:
            table.fail("reasons", f"{reason!r} is not one of disqualify_reasons {list(reasons)}")
    return FollowUp(values["reasons"], timedelta(seconds=values["after"]), values.get("type"))


def parse_status(s: Section, statuses: tuple[str, ...], stages: tuple[str, ...]) -> StatusOptions:
    values = s.take({"name": str, "set_on": str, "locked": bool, "required": list_of_str, "tasks": list},
                    required=("name",))
    check_status(s, "name", values["name"], statuses)
    set_on = values.get("set_on")
    if set_on is not None and set_on.startswith("stage:"):
        if set_on.removeprefix("stage:") not in stages:
            s.fail("set_on", f"{set_on.removeprefix('stage:')!r} is not an opportunity stage; "
                             f"expected one of {list(stages)}")
    elif set_on is not None and set_on not in TRIGGERS:
        s.fail("set_on", f"{set_on!r} is not a trigger; expected outreach, reply, call, call:<outcome>, meeting, "
                         f"meeting:<outcome> or stage:<opportunity stage>")
    if values.get("locked") and set_on is None:
        s.fail("locked", "a locked status is set by automation only, so it needs set_on")
    tasks = tuple(parse_task(s, i, raw) for i, raw in enumerate(values.get("tasks", ())))
    return StatusOptions(values["name"], set_on, values.get("locked", False), values.get("required", ()), tasks)


def parse_task(s: Section, index: int, raw: Any) -> TaskTemplate:
    table = Section(raw, s.path, s.where(f"tasks[{index}]"))
    values = table.take({"title": str, "due": parse_seconds}, required=("title", "due"))
    return TaskTemplate(values["title"], timedelta(seconds=values["due"]))


def check_status(s: Section, key: str, status: str, statuses: tuple[str, ...]) -> None:
    if status not in statuses:
        s.fail(key, f"unknown status {status!r}; expected one of {list(statuses)}")
