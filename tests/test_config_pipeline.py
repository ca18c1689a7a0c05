"""The [pipeline] table and [[statuses]]: the lifecycle's rules as the
config gives them, and each mistake refused naming its key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadtap.core.rules.lifecycle import FollowUp, StatusOptions, TaskTemplate
from tests.test_config import assert_names, config, load, refused

PIPELINE = '''
[pipeline]
no_skipping = true
no_going_back = true
admins = ["Ana@example.com"]
qualified = "Qualified"
disqualified = "Disqualified"
disqualify_reasons = ["No budget", "Bad timing", "Other"]
other_reason = "Other"
lock_converted = true
follow_up = { reasons = ["Bad timing"], after = "90d" }

[[statuses]]
name = "Attempting"
set_on = "outreach"
locked = true
required = ["phone"]
tasks = [ { title = "Call {{ lead.name }}", due = "1d" } ]
'''


def test_a_full_pipeline_loads_into_the_domain_rules(tmp_path):
    pipeline = load(tmp_path, config(extra=PIPELINE)).pipeline

    assert pipeline.statuses == ("New", "Attempting", "Contacted", "Qualified", "Disqualified")
    assert pipeline.closed == ("Qualified", "Disqualified")
    assert (pipeline.no_skipping, pipeline.no_going_back, pipeline.lock_converted) == (True, True, True)
    assert pipeline.admins == frozenset({"ana@example.com"})
    assert (pipeline.qualified, pipeline.disqualified, pipeline.other_reason) == ("Qualified", "Disqualified", "Other")
    assert pipeline.follow_up == FollowUp(("Bad timing",), timedelta(days=90))
    assert pipeline.tasks_on_leave == "cancel"  # by default
    assert pipeline.option("Attempting") == StatusOptions(
        "Attempting", "outreach", True, ("phone",), (TaskTemplate("Call {{ lead.name }}", timedelta(days=1)),))


def test_without_a_pipeline_table_no_rule_applies(tmp_path):
    pipeline = load(tmp_path, config()).pipeline

    assert not (pipeline.no_skipping or pipeline.no_going_back or pipeline.lock_converted)
    assert pipeline.disqualify_reasons == () and pipeline.options == {}


@pytest.mark.parametrize(
    "change, key, words",
    [
        (('qualified = "Qualified"', 'qualified = "Won"'), "pipeline.qualified", ("unknown status", "'Won'")),
        (('disqualified = "Disqualified"', 'disqualified = "New"'), "pipeline.disqualified", ("closed status",)),
        (('other_reason = "Other"', 'other_reason = "Else"'), "pipeline.other_reason", ("not one of",)),
        (('admins = ["Ana@example.com"]', 'admins = ["zed@example.com"]'), "pipeline.admins", ("not an owner",)),
        (('reasons = ["Bad timing"]', 'reasons = ["Late"]'), "pipeline.follow_up.reasons", ("'Late'",)),
        (('name = "Attempting"', 'name = "Trying"'), "statuses[0].name", ("unknown status",)),
        (('set_on = "outreach"', 'set_on = "phone call"'), "statuses[0].set_on", ("not a trigger",)),
        (('set_on = "outreach"', 'set_on = "stage:Proposal"'), "statuses[0].set_on",
         ("'Proposal' is not an opportunity stage", "Open", "Won")),
        (('set_on = "outreach"\n', ''), "statuses[0].locked", ("needs set_on",)),
        (('due = "1d"', 'due = "soon"'), "statuses[0].tasks[0].due", ("not a duration",)),
        (('no_skipping = true', 'no_skiping = true'), "pipeline.no_skiping", ("unknown key",)),
        (('no_skipping = true', 'tasks_on_leave = "close"'), "pipeline.tasks_on_leave",
         ("'close'", "cancel", "keep")),
    ],
)
def test_each_pipeline_mistake_is_refused_naming_its_key(tmp_path, change, key, words):
    old, new = change
    assert old in PIPELINE

    assert_names(refused(tmp_path, config(extra=PIPELINE.replace(old, new))), key, *words)


def test_a_status_configured_twice_is_refused(tmp_path):
    twice = PIPELINE + '\n[[statuses]]\nname = "Attempting"\n'

    assert_names(refused(tmp_path, config(extra=twice)), "statuses[1].name", "configured twice")


def test_a_status_may_follow_an_opportunity_stage(tmp_path):
    staged = PIPELINE.replace('set_on = "outreach"', 'set_on = "stage:Won"')

    assert load(tmp_path, config(extra=staged)).pipeline.options["Attempting"].set_on == "stage:Won"


FIELDS = '''
[[leads.fields]]
name = "industry"
type = "choice"
choices = ["Retail", "Software"]

[[leads.fields]]
name = "seats"
type = "number"
'''


def test_declared_custom_fields_load_into_the_pipeline(tmp_path):
    from leadtap.core.rules.lifecycle import FieldSpec

    pipeline = load(tmp_path, config(extra=FIELDS)).pipeline

    assert pipeline.fields == {"industry": FieldSpec("industry", "choice", ("Retail", "Software")),
                               "seats": FieldSpec("seats", "number")}


@pytest.mark.parametrize(
    "change, key, words",
    [
        (('type = "number"', 'type = "integer"'), "leads.fields[1].type", ("'integer'", "choice")),
        (('type = "number"', 'type = "number"\nchoices = ["1"]'), "leads.fields[1].choices", ("only a choice",)),
        (('choices = ["Retail", "Software"]\n', ''), "leads.fields[0].choices", ("needs its choices",)),
        (('name = "seats"', 'name = "industry"'), "leads.fields[1].name", ("duplicate",)),
        (('name = "seats"', 'name = "source"'), "leads.fields[1].name", ("a lead's own field",)),
        (('name = "seats"', 'name = "phone"'), "leads.fields[1].name", ("a lead's own field",)),
    ],
)
def test_each_custom_field_mistake_is_refused_naming_its_key(tmp_path, change, key, words):
    old, new = change
    assert old in FIELDS

    assert_names(refused(tmp_path, config(extra=FIELDS.replace(old, new))), key, *words)


def test_lead_types_load_and_a_follow_ups_type_must_be_one_of_them(tmp_path):
    typed = {"types": ["New business", "Re-attempting"]}
    follow_up = ('[pipeline]\ndisqualified = "Disqualified"\ndisqualify_reasons = ["Bad timing"]\n'
                 'follow_up = { reasons = ["Bad timing"], after = "90d", type = "Re-attempting" }\n')
    loaded = load(tmp_path, config(leads=typed, extra=follow_up))

    assert (loaded.leads.types, loaded.leads.default_type) == (("New business", "Re-attempting"), "New business")
    assert loaded.pipeline.follow_up.type == "Re-attempting"
    assert_names(refused(tmp_path, config(leads={**typed, "default_type": "Upsell"})), "leads.default_type",
                 "unknown type 'Upsell'")
    assert_names(refused(tmp_path, config(extra=follow_up)), "pipeline.follow_up.type", "unknown type 'Re-attempting'")
