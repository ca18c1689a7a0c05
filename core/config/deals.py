"""The ``[opportunities]`` table (with ``[opportunities.staleness]``) and
``[onboarding]``: the deal pipeline's rules (``core.rules.deals.DealRules``),
checked against the owners' roles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from leadtap.core.config.pipeline import parse_step, parse_task
from leadtap.core.config.reminders import TEMPLATE_NAME_RE
from leadtap.core.config.values import Section, list_of_str, parse_seconds
from leadtap.core.rules.deals import MOVE_EVENTS, STALE, DealRules, MailMove, Onboarding, Staleness

DEFAULT_STAGES = ("Discovery", "Proposal", "Negotiation", "Won", "Lost")
DEFAULT_WARN_BEFORE = timedelta(days=3)


@dataclass(frozen=True)
class OpportunitiesConfig:
    auto_create: bool = True
    stages: tuple[str, ...] = DEFAULT_STAGES
    deals: DealRules = DealRules(DEFAULT_STAGES, won="Won", lost="Lost")


MAX_STAGE = 100  # the opportunities.stage column
MAX_REASON = 200  # the opportunities.lost_reason column


def parse_opportunities(s: Section, onboarding: Section, roles: set[str], sales_role: str) -> OpportunitiesConfig:
    move_sections = s.array("moves")  # taken first: take() refuses keys it does not know
    values = s.take({"auto_create": bool, "stages": list_of_str, "won": str, "lost": str, "lost_reasons": list_of_str,
                     "other_reason": str, "required": inline_table, "staleness": inline_table, "steps": inline_table})
    stages = values.get("stages", DEFAULT_STAGES)
    if not stages:
        s.fail("stages", "at least one stage is expected")
    if len(set(stages)) != len(stages):
        s.fail("stages", "each stage must be named once")
    for stage in stages:
        if not stage.strip() or len(stage) > MAX_STAGE:
            s.fail("stages", f"a stage name of 1 to {MAX_STAGE} characters is expected, not {stage[:40]!r}")
    won = closing_stage(s, values, "won", "Won", stages)
    lost = closing_stage(s, values, "lost", "Lost", stages)
    if won is not None and won == lost:
        s.fail("lost", f"{lost!r} is already the won stage")
    reasons = values.get("lost_reasons", ())
    for reason in reasons:
        if not reason.strip() or len(reason) > MAX_REASON:
            s.fail("lost_reasons", f"a reason of 1 to {MAX_REASON} characters is expected, not {reason[:40]!r}")
    if reasons and lost is None:
        s.fail("lost_reasons", "reasons need a lost stage: set lost = \"...\"")
    if "other_reason" in values and values["other_reason"] not in reasons:
        s.fail("other_reason", f"{values['other_reason']!r} is not one of lost_reasons {list(reasons)}")
    open_stages = tuple(stage for stage in stages if stage not in (won, lost))
    staleness = (parse_staleness(Section(values["staleness"], s.path, s.where("staleness")), open_stages, lost, reasons)
                 if "staleness" in values else Staleness())
    moves = tuple(parse_move(section, stages, lost) for section in move_sections)
    deals = DealRules(stages, won, lost, reasons, values.get("other_reason"),
                      parse_required(s, values.get("required", {}), stages), staleness,
                      parse_onboarding(onboarding, won, roles, sales_role) if onboarding.data else None, moves,
                      parse_stage_steps(s, values.get("steps", {}), stages, frozenset(roles)))
    return OpportunitiesConfig(values.get("auto_create", True), stages, deals)


def parse_move(s: Section, stages: tuple[str, ...], lost: str | None) -> MailMove:
    """``[[opportunities.moves]]``: ``on`` an event, the patterns it must
    match, ``to`` the stage (never the lost one: mail does not say why)."""
    values = s.take({"on": str, "to": str, "sender": str, "subject": str, "attachment": str}, required=("on", "to"))
    if values["on"] not in MOVE_EVENTS:
        s.fail("on", f"{values['on']!r}: expected one of {list(MOVE_EVENTS)}")
    if values["to"] not in stages:
        s.fail("to", f"{values['to']!r} is not a stage; expected one of {list(stages)}")
    if values["to"] == lost:
        s.fail("to", f"mail does not say why a deal is lost: {lost!r} is a person's (or the staleness policy's)")
    if values["on"] == "mail" and "sender" not in values:
        s.fail("sender", "a third party's mail is known by its sender: e.g. sender = \"*@docusign.net\"")
    return MailMove(values["on"], values["to"], values.get("sender"), values.get("subject"), values.get("attachment"))


def closing_stage(s: Section, values: dict, key: str, default: str, stages: tuple[str, ...]) -> str | None:
    """``won``/``lost``: as given (a stage), else the stage of the default name if there is one."""
    if key not in values:
        return default if default in stages else None
    if values[key] not in stages:
        s.fail(key, f"{values[key]!r} is not a stage; expected one of {list(stages)}")
    if values[key] == stages[0]:
        s.fail(key, f"{values[key]!r} is the first stage, where every deal starts")
    return values[key]


DEAL_STEP_KINDS = ("task", "email", "assign")  # a `set` would set the lead's fields, not the deal's: not offered


def parse_stage_steps(s: Section, raw: dict, stages: tuple[str, ...], roles: frozenset[str]) -> dict:
    """``{ Proposal = [{ email = "owner", template = "proposal_chase", after = "5d" }] }``: a stage's workflow."""
    steps = {}
    for stage, listed in raw.items():
        if stage not in stages:
            s.fail("steps", f"{stage!r} is not a stage; expected one of {list(stages)}")
        if not isinstance(listed, list):
            s.fail(f"steps.{stage}", "a list of steps is expected, e.g. [{ email = \"owner\", template = \"x\" }]")
        steps[stage] = tuple(parse_step(s, i, step, roles, f"steps.{stage}", DEAL_STEP_KINDS)
                             for i, step in enumerate(listed))
    return steps


def parse_required(s: Section, raw: Any, stages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``{ Proposal = ["amount"], Won = ["amount", "close_date"] }``"""
    required = {}
    for stage, names in raw.items():
        if stage not in stages:
            s.fail("required", f"{stage!r} is not a stage; expected one of {list(stages)}")
        try:
            required[stage] = list_of_str(names)
        except ValueError:
            s.fail(f"required.{stage}", "a list of field names is expected, e.g. [\"amount\"]")
    return required


def parse_staleness(s: Section, open_stages: tuple[str, ...], lost: str | None,
                    reasons: tuple[str, ...]) -> Staleness:
    values = s.take({"max_open": duration, "max_in_stage": inline_table, "max_idle": duration, "warn_before": duration,
                     "reason": str})
    in_stage = {}
    for stage, limit in values.get("max_in_stage", {}).items():
        if stage not in open_stages:
            s.fail("max_in_stage", f"{stage!r} is not an open stage; expected one of {list(open_stages)}")
        try:
            in_stage[stage] = duration(limit)
        except ValueError as exc:
            s.fail(f"max_in_stage.{stage}", str(exc))
    staleness = Staleness(values.get("max_open"), in_stage, values.get("max_idle"),
                          values.get("warn_before", DEFAULT_WARN_BEFORE), values.get("reason", STALE))
    if staleness.enabled and lost is None:
        s.fail("max_open", "a stale deal is closed lost, so [opportunities] needs a lost stage")
    if len(staleness.reason) > MAX_REASON:
        s.fail("reason", f"a reason of at most {MAX_REASON} characters is expected")
    if reasons and staleness.reason not in reasons:
        s.fail("reason", f"stale deals are closed with the reason {staleness.reason!r}, "
                         f"which is not one of lost_reasons {list(reasons)}")
    return staleness


def parse_onboarding(s: Section, won: str | None, roles: set[str], sales_role: str) -> Onboarding:
    values = s.take({"role": str, "tasks": list, "template": str}, required=("role",))
    if values["role"] == sales_role:
        s.fail("role", f"{sales_role!r} is [assignment] role: onboarding needs a role of its own "
                       "(its rotation would take the new leads' turns)")
    if won is None:
        s.fail("role", "onboarding starts when a deal is won, so [opportunities] needs a won stage")
    if values["role"] not in roles:
        s.fail("role", f"no owner holds the role {values['role']!r}; give it to the onboarding staff's [[owners]]")
    if "template" in values and not TEMPLATE_NAME_RE.fullmatch(values["template"]):
        s.fail("template", "a template name (letters, digits, _ and -) is expected")
    tasks = tuple(parse_task(s, i, raw) for i, raw in enumerate(values.get("tasks", ())))
    return Onboarding(values["role"], tasks, values.get("template", "onboarding_assigned"))


def duration(value: Any) -> timedelta:
    return timedelta(seconds=parse_seconds(value))


def inline_table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("a table is expected, e.g. { Proposal = [\"amount\"] } or [opportunities.staleness]")
    return value
