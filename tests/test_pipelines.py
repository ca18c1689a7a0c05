"""Several lead pipelines: ``[[pipelines]]`` beside the default one that
``[leads]`` and ``[pipeline]`` describe (a config without them loads as it
always did). A mailbox, ``leads add`` and a reminder rule choose one; a
lead's moves, automation and workflow are its pipeline's.

The config's rules first; then on Dovecot and SQLite/PostgreSQL."""

from __future__ import annotations

from sqlalchemy import update

from leadtap.bootstrap import build_app
from leadtap.core.store.db import Lead
from tests.helpers import enquiry
from tests.test_config import config, load, refused
from tests.test_ingest import env  # noqa: F401  (the fixture)
from tests.test_reminders import Remind, smtp  # noqa: F401  (the fixture)
from tests.test_workflows import later, run_steps, task_titles

PARTNERS = """
[[pipelines]]
name = "Partners"
statuses = ["Applied", "Vetting", "Signed", "Rejected"]
closed_statuses = ["Signed", "Rejected"]
no_skipping = true
disqualified = "Rejected"
disqualify_reasons = ["Not a fit", "Other"]
other_reason = "Other"

[[statuses]]
pipeline = "Partners"
name = "Vetting"
tasks = [ { title = "Check {{ lead.company or lead.name }}'s references", due = "2d" } ]
"""


# --- the config -------------------------------------------------------------------


def test_a_config_without_pipelines_has_its_one_default_pipeline(tmp_path):
    loaded = load(tmp_path, config())

    assert list(loaded.pipelines) == ["default"] and loaded.pipeline.key is None
    assert loaded.pipeline_of(None) is loaded.pipeline and loaded.mailboxes[0].pipeline is None


def test_a_pipeline_reads_with_its_rules_and_its_statuses_options(tmp_path):
    loaded = load(tmp_path, config(extra='[pipeline]\nname = "Sales"\n' + PARTNERS))

    assert list(loaded.pipelines) == ["Sales", "Partners"]
    partners = loaded.pipelines["Partners"]
    assert partners.key == "Partners" and not partners.default and loaded.pipeline.key is None
    assert partners.default_status == "Applied" and partners.closed == ("Signed", "Rejected")
    assert partners.no_skipping and partners.disqualify_reasons == ("Not a fit", "Other")
    assert partners.option("Vetting").tasks and not loaded.pipeline.option("Vetting").tasks
    assert loaded.closed == ("Qualified", "Disqualified", "Signed", "Rejected")
    assert loaded.pipeline_called("partners") is partners


def test_bad_pipelines_are_refused_naming_the_key(tmp_path):
    cases = [
        (PARTNERS.replace('name = "Partners"\nstatuses', 'name = "default"\nstatuses'), "pipelines[0].name",
         "'default' is already a pipeline"),
        (PARTNERS.replace('pipeline = "Partners"', 'pipeline = "Partner"'), "statuses[0].pipeline",
         "unknown pipeline 'Partner'; expected one of ['default', 'Partners']"),
        (PARTNERS.replace('"Applied", "Vetting"', '"Applied", "Qualified", "Vetting"'), "pipelines[0].closed_statuses",
         "'Qualified' is closed in the default pipeline: a status is closed in every pipeline or in none"),
        (PARTNERS.replace('no_skipping = true', 'default_status = "Signed"'), "pipelines[0].default_status",
         "must start in an open status"),
        (PARTNERS.replace('disqualified = "Rejected"', 'disqualified = "Vetting"'), "pipelines[0].disqualified",
         "must be a closed status"),
    ]
    for text, key, words in cases:
        error = str(refused(tmp_path, config(extra=text)))
        assert key in error and words in error, error


def test_a_mailbox_and_a_reminder_rule_choose_a_known_pipeline(tmp_path):
    mailbox = config().split("[[mailboxes]]")[1]
    text = config(extra=PARTNERS).replace("[[mailboxes]]" + mailbox, "[[mailboxes]]" + mailbox
                                          + 'pipeline = "Partner"\n')
    assert "mailboxes[0].pipeline: unknown pipeline 'Partner'" in str(refused(tmp_path, text))

    rule = ('[smtp]\nhost = "127.0.0.1"\nfrom = "crm@example.com"\n[[reminders.rules]]\nname = "stuck"\n'
            'pipeline = "Partners"\nstatus = "New"\nafter = "2d"\n')
    error = str(refused(tmp_path, config(extra=PARTNERS + rule)))
    assert "reminders.rules[0].status: unknown status 'New'; expected one of ['Applied', 'Vetting'" in error


# --- on the servers ----------------------------------------------------------------


def test_a_mailbox_makes_leads_in_its_pipeline_and_they_move_by_its_rules(env, mailbox, dovecot):
    from tests.helpers import Mailbox

    partners = Mailbox(dovecot, f"p{mailbox.user}", dovecot.password)
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test"))
    partners.append(enquiry(name="Kim Lee", email="kim@reseller.test", company="Reseller"))
    env.configure(mailbox.section(), partners.section(name="partners", pipeline="Partners"),
                  extra='[[statuses]]\nname = "Attempting"\nset_on = "outreach"\n' + PARTNERS)
    env.upgrade()

    assert env.poll() == 0
    jo, kim = env.leads()
    assert (jo["pipeline"], jo["status"]) == (None, "New")
    assert (kim["pipeline"], kim["status"]) == ("Partners", "Applied")

    code, _, err = env.cli("leads", "set", "2", "--status", "Attempting")
    assert code == 1 and "unknown status 'Attempting'; expected one of Applied, Vetting, Signed, Rejected" in err
    code, _, err = env.cli("leads", "set", "2", "--status", "Signed", "--by", "ana@example.com")
    assert code == 0  # closed statuses are always reachable
    assert env.cli("leads", "set", "2", "--status", "Vetting")[0] == 0  # the command line acts as an admin
    code, out, _ = env.cli("leads", "show", "2")
    assert "Check Reseller's references" in out

    # a call made is outreach: the default pipeline's lead moves (set_on), the partner's has no such status
    assert env.cli("leads", "log", "1", "call", "--outcome", "no-answer")[0] == 0
    env.execute(update(Lead).where(Lead.id == 2).values(status="Applied"))
    assert env.cli("leads", "log", "2", "call", "--outcome", "no-answer")[0] == 0
    assert [(lead["id"], lead["status"]) for lead in env.leads()] == [(1, "Attempting"), (2, "Applied")]


def test_leads_add_list_and_board_by_pipeline(env, mailbox):
    env.configure(mailbox.section(), extra=PARTNERS)
    env.upgrade()

    code, out, _ = env.cli("leads", "add", "--name", "Kim Lee", "--phone", "+1 555", "--pipeline", "partners")
    assert code == 0 and "created, Applied" in out
    assert env.cli("leads", "add", "--name", "Jo Smith", "--phone", "+1 556")[0] == 0
    code, _, err = env.cli("leads", "add", "--name", "Al", "--phone", "1", "--pipeline", "Resellers")
    assert code == 1 and "unknown pipeline 'Resellers'; expected one of default, Partners" in err

    code, out, _ = env.cli("leads", "list", "--pipeline", "Partners", "--format", "csv")
    assert code == 0 and "Kim Lee" in out and "Jo Smith" not in out
    code, out, _ = env.cli("leads", "list", "--pipeline", "default", "--status", "new", "--format", "csv")
    assert code == 0 and "Jo Smith" in out and "Kim Lee" not in out
    code, out, _ = env.cli("leads", "board", "--pipeline", "Partners")
    assert code == 0 and out.startswith("pipeline Partners\nApplied (1)") and "#1 Kim Lee" in out
    code, _, err = env.cli("leads", "list", "--pipeline", "nope")
    assert code == 2 and "unknown pipeline 'nope'" in err


def test_a_workflow_is_its_pipelines(env, mailbox, smtp):
    env.configure(mailbox.section(), extra=PARTNERS + (
        '\n[[statuses]]\npipeline = "Partners"\nname = "Applied"\n'
        'steps = [{ task = "Send the partner pack to {{ lead.name }}", due = "1d", after = "1h" }]\n'
        '\n[[statuses]]\nname = "New"\nsteps = [{ task = "Call {{ lead.name }}", due = "1d", after = "1h" }]\n'))
    env.upgrade()
    env.cli("leads", "add", "--name", "Kim Lee", "--phone", "+1 555", "--pipeline", "Partners")
    env.cli("leads", "add", "--name", "Jo Smith", "--phone", "+1 556")

    assert run_steps(env, later(0.1)).done == 2

    assert task_titles(env) == ["Send the partner pack to Kim Lee", "Call Jo Smith"]


def test_a_reminder_rule_with_a_pipeline_reminds_of_its_leads_only(tmp_path, database_url, smtp, capsys):
    remind = Remind(tmp_path, database_url, smtp.port, capsys)
    remind.configure(PARTNERS.replace('"Applied", "Vetting"', '"New", "Vetting"') + (
        '[[reminders.rules]]\nname = "partners-waiting"\npipeline = "Partners"\nstatus = "New"\nafter = "2d"\n'))
    jo = remind.add_lead("Jo Smith", "ana@example.com")
    kim = remind.add_lead("Kim Lee", "ben@example.com")
    app = build_app(str(remind.path))
    with app.db.transaction() as session:
        session.execute(update(Lead).where(Lead.id == kim).values(pipeline="Partners"))
    app.close()

    code, out, _ = remind.cli("remind")

    assert code == 0 and "1 sent" in out
    (message,) = smtp.messages
    assert message["To"] == "ben@example.com" and jo != kim
    assert 'in the status "New" of the Partners pipeline' in message.get_body(("plain",)).get_content()
