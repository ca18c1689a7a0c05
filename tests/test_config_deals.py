"""The [opportunities] and [onboarding] tables: loaded into the deal rules,
every mistake refused naming its key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadtap.core.rules.deals import Onboarding, Staleness
from leadtap.core.rules.lifecycle import TaskTemplate
from tests.test_config import SMTP, assert_names, config, load, owner, refused

DAY = timedelta(days=1)
OWNERS = (owner(), owner(email="olga@example.com", name="Olga", roles=["onboarding"]))
OPPORTUNITIES = '''
[opportunities]
stages = ["Discovery", "Proposal", "Negotiation", "Won", "Lost"]
won = "Won"
lost = "Lost"
lost_reasons = ["Price", "Went with a competitor", "No decision", "Stale", "Other"]
other_reason = "Other"
required = { Proposal = ["amount"], Won = ["amount", "close_date"] }

[opportunities.staleness]
max_open = "120d"
max_in_stage = { Discovery = "14d", Proposal = "21d", Negotiation = "30d" }
max_idle = "30d"
warn_before = "3d"

[onboarding]
role = "onboarding"
tasks = [ { title = "Kick-off call with {{ lead.company or lead.name }}", due = "7d" }, { title = "Onboarding complete", due = "30d" } ]
template = "onboarding_assigned"
'''
DEALS = SMTP + OPPORTUNITIES


def deal_config(extra: str = "") -> str:
    """The base config with its own [opportunities] table left out for ``extra``'s."""
    base = config(owners=OWNERS, extra=extra)
    start = base.index("[opportunities]\n")
    return base[:start] + base[base.index("[ingest]"):]


def test_the_issue_example_loads_into_the_deal_rules(tmp_path):
    loaded = load(tmp_path, deal_config(DEALS))
    deals = loaded.opportunities.deals

    assert (deals.won, deals.lost, deals.other_reason) == ("Won", "Lost", "Other")
    assert deals.required == {"Proposal": ("amount",), "Won": ("amount", "close_date")}
    assert deals.staleness == Staleness(120 * DAY, {"Discovery": 14 * DAY, "Proposal": 21 * DAY,
                                                    "Negotiation": 30 * DAY}, 30 * DAY, 3 * DAY)
    assert deals.onboarding == Onboarding("onboarding", (TaskTemplate("Kick-off call with {{ lead.company or lead.name }}", 7 * DAY),
                                                         TaskTemplate("Onboarding complete", 30 * DAY)))
    assert loaded.sweeps and loaded.owes_mail


def test_the_defaults_close_on_won_and_lost_with_no_policy(tmp_path):
    deals = load(tmp_path, deal_config()).opportunities.deals
    assert (deals.won, deals.lost, deals.staleness.enabled, deals.onboarding) == ("Won", "Lost", False, None)
    custom = load(tmp_path, deal_config('[opportunities]\nstages = ["Open", "Signed"]\n')).opportunities.deals
    assert (custom.won, custom.lost, custom.closed) == (None, None, ())


@pytest.mark.parametrize(
    "change, key, words",
    [
        (('won = "Won"', 'won = "Signed"'), "opportunities.won", ("'Signed' is not a stage",)),
        (('lost = "Lost"', 'lost = "Won"'), "opportunities.lost", ("already the won stage",)),
        (('lost = "Lost"', 'lost = "Discovery"'), "opportunities.lost", ("the first stage",)),
        (('other_reason = "Other"', 'other_reason = "Else"'), "opportunities.other_reason", ("not one of",)),
        (('required = { Proposal', 'required = { Pitch'), "opportunities.required", ("'Pitch' is not a stage",)),
        (('Won = ["amount", "close_date"]', 'Won = "amount"'), "opportunities.required.Won", ("list of field",)),
        (('Discovery = "14d"', 'Won = "14d"'), "opportunities.staleness.max_in_stage", ("not an open stage",)),
        (('Proposal = "21d"', 'Proposal = "soon"'), "opportunities.staleness.max_in_stage.Proposal",
         ("not a duration",)),
        (('"Stale", ', ''), "opportunities.staleness.reason", ("'Stale'", "not one of lost_reasons")),
        (('max_idle = "30d"', 'max_idel = "30d"'), "opportunities.staleness.max_idel", ("did you mean 'max_idle'",)),
        (('role = "onboarding"', 'role = "support"'), "onboarding.role", ("no owner holds the role 'support'",)),
        (('role = "onboarding"', 'role = "closer"'), "onboarding.role", ("needs a role of its own",)),
        (('"Negotiation", "Won"', '"' + "N" * 101 + '", "Won"'), "opportunities.stages", ("1 to 100 characters",)),
        (('"No decision"', '"' + "x" * 201 + '"'), "opportunities.lost_reasons", ("1 to 200 characters",)),
        (('due = "7d"', 'due = "a week"'), "onboarding.tasks[0].due", ("not a duration",)),
        (('template = "onboarding_assigned"', 'template = "../x"'), "onboarding.template", ("template name",)),
    ],
)
def test_each_deal_mistake_is_refused_naming_its_key(tmp_path, change, key, words):
    old, new = change
    assert old in DEALS

    assert_names(refused(tmp_path, deal_config(DEALS.replace(old, new, 1))), key, *words)


def test_a_staleness_policy_needs_smtp_to_warn_and_a_lost_stage_to_close(tmp_path):
    no_smtp = DEALS.replace(SMTP, "")
    assert_names(refused(tmp_path, deal_config(no_smtp)), "smtp", "warns owners")
    no_lost = DEALS.replace('"Won", "Lost"]', '"Won"]').replace('lost = "Lost"\n', "").replace(
        'lost_reasons = ["Price", "Went with a competitor", "No decision", "Stale", "Other"]\nother_reason = "Other"\n', "")
    assert_names(refused(tmp_path, deal_config(no_lost)), "opportunities.staleness.max_open",
                 "needs a lost stage")


MOVES = '''
[[opportunities.moves]]
on = "outreach"
attachment = "*proposal*|*quote*|*offer*"
to = "Proposal"

[[opportunities.moves]]
on = "mail"
sender = "*@docusign.net"
subject = "Completed*"
to = "Won"
'''


def test_moves_on_mail_load_and_each_mistake_is_refused_naming_its_key(tmp_path):
    from leadtap.core.rules.deals import MailMove

    deals = load(tmp_path, deal_config(DEALS + MOVES)).opportunities.deals

    assert deals.moves == (MailMove("outreach", "Proposal", attachment="*proposal*|*quote*|*offer*"),
                           MailMove("mail", "Won", "*@docusign.net", "Completed*"))
    for old, new, key, words in [('on = "outreach"', 'on = "call"', "opportunities.moves[0].on", "'call'"),
                                 ('to = "Proposal"', 'to = "Pitch"', "opportunities.moves[0].to", "not a stage"),
                                 ('to = "Proposal"', 'to = "Lost"', "opportunities.moves[0].to", "does not say why"),
                                 ('sender = "*@docusign.net"\n', '', "opportunities.moves[1].sender", "its sender")]:
        assert_names(refused(tmp_path, deal_config(DEALS + MOVES.replace(old, new, 1))), key, words)
