"""The ``[pipeline]`` table and the ``[[statuses]]`` array: the lead
lifecycle's rules (``core.rules.lifecycle.Pipeline``), checked against the
statuses and owners of the rest of the configuration."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any, Mapping

from leadtap.core.config.reminders import TEMPLATE_NAME_RE
from leadtap.core.config.values import Section, list_of_str, parse_seconds
from leadtap.core.rules.lifecycle import (DEFAULT_PIPELINE, RESERVED, TRIGGERS, FieldSpec, FollowUp, Pipeline,
                                          Refused, StatusOptions, TaskTemplate, normalized)
from leadtap.core.rules.model import valid_email
from leadtap.core.rules.workflows import CONTACT, OWNER, ROLE, SENDERS, STEP_KINDS, Step

# A status's open tasks when the lead leaves it for another open status: cancelled, or kept open.
TASKS_ON_LEAVE = ("cancel", "keep")


def parse_pipeline(s: Section, statuses_array: list[Section], statuses: tuple[str, ...], closed: tuple[str, ...],
                   default_status: str, owners: set[str], stages: tuple[str, ...] = (),
                   types: tuple[str, ...] = (), roles: frozenset[str] = frozenset(),
                   fields: Mapping[str, FieldSpec] | None = None) -> Pipeline:
    values = s.take({
        "no_skipping": bool, "no_going_back": bool, "admins": list_of_str, "qualified": str, "disqualified": str,
        "disqualify_reasons": list_of_str, "other_reason": str, "lock_converted": bool, "follow_up": dict,
        "tasks_on_leave": str, "create_in": list_of_str, "name": str,
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
        option = parse_status(section, statuses, stages, roles, fields or {})
        if option.name in options:
            section.fail("name", f"{option.name!r} is configured twice")
        if option.name in closed and any(step.kind in ("task", "assign") for step in option.steps):
            section.fail("steps", f"{option.name!r} is closed: a closed lead takes no tasks and is not reassigned "
                                  f"(its steps may email and set fields)")
        options[option.name] = option
    return Pipeline(
        statuses=statuses, closed=closed, default_status=default_status,
        no_skipping=values.get("no_skipping", False), no_going_back=values.get("no_going_back", False),
        admins=admins, qualified=values.get("qualified"), disqualified=values.get("disqualified"),
        disqualify_reasons=reasons, other_reason=values.get("other_reason"),
        lock_converted=values.get("lock_converted", False), follow_up=follow_up, options=options,
        tasks_on_leave=values.get("tasks_on_leave", "cancel"), create_in=values.get("create_in", ()),
        name=values.get("name", DEFAULT_PIPELINE),
    )


def default_name(s: Section) -> str:
    """``[pipeline] name``, read first: ``[[statuses]]`` name the default pipeline by it."""
    name = s.data.get("name", DEFAULT_PIPELINE)
    if isinstance(name, str):
        check_pipeline_name(s, name, [])
    return name if isinstance(name, str) else DEFAULT_PIPELINE


def statuses_by_pipeline(sections: list[Section], default: str) -> dict[str | None, list[Section]]:
    """``[[statuses]]`` grouped by their ``pipeline`` key (None: the default
    pipeline's, named or not)."""
    grouped: dict[str | None, list[Section]] = {}
    for section in sections:
        name = section.take({"pipeline": str}, finish=False).get("pipeline")
        grouped.setdefault(None if name == default else name, []).append(section)
    return grouped


MAX_PIPELINE_NAME = 100  # the leads.pipeline column


def check_pipeline_name(s: Section, name: str, taken: list[str]) -> None:
    if name != name.strip() or not 1 <= len(name) <= MAX_PIPELINE_NAME:
        s.fail("name", f"a name of 1 to {MAX_PIPELINE_NAME} characters, no space around it, is expected")
    clash = next((other for other in taken if other.casefold() == name.casefold()), None)
    if clash is not None:
        s.fail("name", f"{name!r} is already a pipeline ({clash!r}; names are told apart whatever their case; "
                       f"the default one's is [pipeline] name)")


def parse_pipelines(sections: list[Section], options: dict[str | None, list[Section]], default: Pipeline,
                    owners: set[str], stages: tuple[str, ...], types: tuple[str, ...],
                    roles: frozenset[str], fields: Mapping[str, FieldSpec] | None = None) -> dict[str, Pipeline]:
    """``[[pipelines]]``: each its statuses (a status closed in one is closed
    in all), its rules as ``[pipeline]`` has them, its ``[[statuses]]``
    (``pipeline = "NAME"``). The default pipeline comes first."""
    pipelines = {default.name: default}
    closed_anywhere = dict.fromkeys(default.closed, default.name)
    open_anywhere = dict.fromkeys(default.open_statuses(), default.name)
    for s in sections:
        values = s.take({"name": str, "statuses": list_of_str, "closed_statuses": list_of_str,
                         "default_status": str}, required=("name", "statuses"), finish=False)
        name, statuses = values["name"], values["statuses"]
        check_pipeline_name(s, name, list(pipelines))
        if len(set(statuses)) != len(statuses):
            s.fail("statuses", "each status must be named once")
        closed = values.get("closed_statuses", ())
        for status in closed:
            check_status(s, "closed_statuses", status, statuses)
        first_open = next((status for status in statuses if status not in closed), None)
        if first_open is None:
            s.fail("statuses", "at least one open status is expected (a lead starts in one)")
        default_status = values.get("default_status", first_open)
        check_status(s, "default_status", default_status, statuses)
        if default_status in closed:
            s.fail("default_status", "a new lead must start in an open status, not a closed one")
        for status in statuses:
            other = (open_anywhere if status in closed else closed_anywhere).get(status)
            if other is not None:
                s.fail("closed_statuses", f"{status!r} is {'open' if status in closed else 'closed'} in the "
                                          f"{other} pipeline: a status is closed in every pipeline or in none")
        pipeline = parse_pipeline(s, options.pop(name, []), tuple(statuses), tuple(closed), default_status, owners,
                                  stages, types, roles, fields)
        pipelines[name] = replace(pipeline, name=name, default=False)
        closed_anywhere.update(dict.fromkeys(closed, name))
        open_anywhere.update(dict.fromkeys(pipeline.open_statuses(), name))
    for name, unknown in options.items():
        unknown[0].fail("pipeline", f"unknown pipeline {name!r}; expected one of {list(pipelines)}")
    return pipelines


def parse_follow_up(s: Section, raw: dict, reasons: tuple[str, ...], types: tuple[str, ...]) -> FollowUp:
    table = Section(raw, s.path, s.where("follow_up"))
    values = table.take({"reasons": list_of_str, "after": parse_seconds, "type": str}, required=("reasons", "after"))
    if "type" in values and values["type"] not in types:
        table.fail("type", f"unknown type {values['type']!r}; expected one of {list(types)} ([leads] types)")
    for reason in values["reasons"]:
        if reason not in reasons:
            table.fail("reasons", f"{reason!r} is not one of disqualify_reasons {list(reasons)}")
    return FollowUp(values["reasons"], timedelta(seconds=values["after"]), values.get("type"))


def parse_status(s: Section, statuses: tuple[str, ...], stages: tuple[str, ...],
                 roles: frozenset[str] = frozenset(), fields: Mapping[str, FieldSpec] | None = None) -> StatusOptions:
    values = s.take({"name": str, "set_on": str, "locked": bool, "required": list_of_str, "tasks": array,
                     "steps": array}, required=("name",))
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
    steps = tuple(parse_step(s, i, raw, roles) for i, raw in enumerate(values.get("steps", ())))
    for index, step in enumerate(steps):  # a value a declared field takes (a choice, a number, a date)
        if step.kind == "set":
            try:
                normalized(step.values, Pipeline(statuses=(), fields=fields or {}))
            except Refused as exc:
                s.fail(f"steps[{index}].set", str(exc))
    return StatusOptions(values["name"], set_on, values.get("locked", False), values.get("required", ()), tasks,
                         steps)


def parse_task(s: Section, index: int, raw: Any) -> TaskTemplate:
    table = Section(raw, s.path, s.where(f"tasks[{index}]"))
    values = table.take({"title": str, "due": parse_seconds}, required=("title", "due"))
    return TaskTemplate(values["title"], timedelta(seconds=values["due"]))


def parse_step(s: Section, index: int, raw: Any, roles: frozenset[str], key: str = "steps",
               kinds: tuple[str, ...] = STEP_KINDS) -> Step:
    """One step of a workflow: ``{ task = "Call {{ lead.name }}", due = "1d" }``,
    ``{ email = "contact", template = "acknowledgement" }``, ``{ assign = "seniors",
    after = "3d" }``, ``{ set = { priority = "high" } }``; each may wait ``after``."""
    where = f"{key}[{index}]"
    if not isinstance(raw, dict):
        s.fail(where, "a step is a table, e.g. { task = \"Call {{ lead.name }}\", due = \"1d\" }")
    given = [kind for kind in STEP_KINDS if kind in raw]
    if len(given) != 1:
        s.fail(where, f"a step does one thing: one of {', '.join(STEP_KINDS)} "
                      f"({'none' if not given else ' and '.join(given)} given)")
    kind, table = given[0], Section(raw, s.path, s.where(where))
    if kind not in kinds:
        table.fail(kind, f"a deal stage's steps are {', '.join(kinds)}")
    schema = {"after": parse_seconds, **STEP_SCHEMAS[kind]}
    values = table.take(schema, required=STEP_REQUIRED[kind])
    after = timedelta(seconds=values.pop("after", 0))
    return STEP_PARSERS[kind](table, values, after, roles)


def task_step(table: Section, values: dict, after: timedelta, roles) -> Step:
    return Step("task", after, title=values["task"], due=timedelta(seconds=values["due"]))


def email_step(table: Section, values: dict, after: timedelta, roles: frozenset[str]) -> Step:
    to = values["email"].strip()
    if to.startswith(ROLE) and to.removeprefix(ROLE) not in roles:
        table.fail("email", f"no owner holds the role {to.removeprefix(ROLE)!r}; roles: {sorted(roles)}")
    elif to not in (OWNER, CONTACT) and not to.startswith(ROLE) and not valid_email(to):
        table.fail("email", f"{to!r}: expected owner, contact, role:NAME or an email address")
    if not TEMPLATE_NAME_RE.fullmatch(values["template"]) or len(values["template"]) > 100:
        table.fail("template", "a template name (letters, digits, _ and -, at most 100) is expected")
    for key in ("once_per", "from", "reply_to"):
        if key in values and to != CONTACT:
            table.fail(key, "only an email to the contact takes it")
    if values.get("from", "smtp") not in SENDERS:
        table.fail("from", f"{values['from']!r}: expected one of {list(SENDERS)}")
    reply_to = values.get("reply_to")
    if reply_to is not None and reply_to != OWNER and not valid_email(reply_to):
        table.fail("reply_to", f"{reply_to!r}: expected owner or an email address")
    once_per = timedelta(seconds=values["once_per"]) if "once_per" in values else Step("email").once_per
    return Step("email", after, to=to.lower() if valid_email(to) else to, template=values["template"],
                once_per=once_per, sender=values.get("from", "smtp"), reply_to=reply_to)


def assign_step(table: Section, values: dict, after: timedelta, roles: frozenset[str]) -> Step:
    if values["assign"] not in roles:
        table.fail("assign", f"no owner holds the role {values['assign']!r}; roles: {sorted(roles)}")
    return Step("assign", after, role=values["assign"])


def set_step(table: Section, values: dict, after: timedelta, roles) -> Step:
    """Fields automation sets: never the contact's address (mail is matched on
    it), nor what has its own option; declared types are checked by ``parse_status``."""
    given = values["set"]
    if not given or not all(isinstance(v, str) and v.strip() for v in given.values()):
        table.fail("set", "fields and their values (text, not empty) are expected, e.g. { priority = \"high\" }")
    for name in given:
        if name.strip().casefold() in (*RESERVED, "email"):
            table.fail("set", f"{name.strip()} is not a field a workflow sets")
    return Step("set", after, values={name.strip(): value.strip() for name, value in given.items()})


STEP_SCHEMAS = {
    "task": {"task": str, "due": parse_seconds},
    "email": {"email": str, "template": str, "once_per": parse_seconds, "from": str, "reply_to": str},
    "assign": {"assign": str},
    "set": {"set": dict},
}
STEP_REQUIRED = {"task": ("task", "due"), "email": ("email", "template"), "assign": ("assign",), "set": ("set",)}
STEP_PARSERS = {"task": task_step, "email": email_step, "assign": assign_step, "set": set_step}


def array(value: Any) -> list:
    if not isinstance(value, list):
        raise ValueError("a list is expected, e.g. [{ task = \"Call {{ lead.name }}\", due = \"1d\" }]")
    return value


def check_status(s: Section, key: str, status: str, statuses: tuple[str, ...]) -> None:
    if status not in statuses:
        s.fail(key, f"unknown status {status!r}; expected one of {list(statuses)}")
