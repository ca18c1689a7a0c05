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


# --- what a review found ------------------------------------------------------------------


def test_by_reply_a_lead_is_its_pipelines_admins(env, mailbox):
    import pytest

    from leadtap.core.rules.reply_rules import NotAuthorised, ReplyPolicy
    from leadtap.core.use_cases.reply_changes import check_lead

    env.configure(mailbox.section(), extra='[pipeline]\nadmins = ["cy@example.com"]\n'
                  + PARTNERS.replace("no_skipping = true", 'admins = ["ben@example.com"]'))
    env.upgrade()
    env.cli("leads", "add", "--name", "Kim Lee", "--phone", "1", "--pipeline", "Partners", "--owner", "ana@example.com")
    app = build_app(str(env.path))
    config = app.config
    policy = ReplyPolicy(b"s" * 32, config.commands.token_max_age, admins=config.pipeline.admins,
                         pipeline_admins={"Partners": config.pipelines["Partners"].admins})
    with app.db.transaction() as session:
        check_lead(session, policy, "ben@example.com", 1)  # the Partners admin may
        with pytest.raises(NotAuthorised, match="not yours"):
            check_lead(session, policy, "cy@example.com", 1)  # the default pipeline's may not
    app.close()


def test_pipeline_names_and_statuses_are_checked(tmp_path):
    cases = [
        (PARTNERS.replace('name = "Partners"\nstatuses', 'name = "partners "\nstatuses'), "pipelines[0].name",
         "no space around it"),
        (PARTNERS.replace('name = "Partners"\nstatuses', f'name = "{"P" * 101}"\nstatuses'), "pipelines[0].name",
         "1 to 100 characters"),
        (PARTNERS.replace('name = "Partners"\nstatuses', 'name = "DEFAULT"\nstatuses'), "pipelines[0].name",
         "'DEFAULT' is already a pipeline ('default'"),
        (PARTNERS.replace('["Applied", "Vetting", "Signed", "Rejected"]', '["Applied", "Applied", "Signed", "Rejected"]'),
         "pipelines[0].statuses", "each status must be named once"),
        (PARTNERS.replace('["Applied", "Vetting", "Signed", "Rejected"]', '["Signed", "Rejected"]')
         .replace("disqualified", "# disqualified").replace("disqualify_reasons", "# d").replace("other_reason", "# o")
         .replace('name = "Vetting"', 'name = "Signed"').replace("tasks =", "# tasks ="),
         "pipelines[0].statuses", "at least one open status"),
    ]
    for text, key, words in cases:
        error = str(refused(tmp_path, config(extra=text)))
        assert key in error and words in error, error


def test_statuses_may_name_the_default_pipeline_and_a_set_steps_error_names_its_entry(tmp_path):
    loaded = load(tmp_path, config(extra='[pipeline]\nname = "Sales"\n[[statuses]]\npipeline = "Sales"\n'
                                         'name = "Attempting"\nset_on = "outreach"\n'))
    assert loaded.pipeline.option("Attempting").set_on == "outreach"

    fields = '[[leads.fields]]\nname = "tier"\ntype = "choice"\nchoices = ["gold", "silver"]\n'
    text = config(extra=fields + '[[statuses]]\nname = "New"\n' + PARTNERS
                  + '[[statuses]]\npipeline = "Partners"\nname = "Applied"\nsteps = [{ set = { tier = "bronze" } }]\n')
    assert "statuses[2].steps[0].set: 'bronze' is not a choice of tier" in str(refused(tmp_path, text))


def test_a_task_rule_with_a_pipeline_reminds_of_its_tasks_only(tmp_path, database_url, smtp, capsys):
    from datetime import timedelta

    from leadtap.core.store.db import Task
    from tests.test_reminders import NOW

    remind = Remind(tmp_path, database_url, smtp.port, capsys)
    remind.configure(PARTNERS + '[[reminders.rules]]\nname = "partner-tasks"\nkind = "task"\npipeline = "Partners"\n'
                                'after = "1h"\n')
    ids = [remind.add_lead("Jo Smith", "ana@example.com"), remind.add_lead("Kim Lee", "ben@example.com")]
    app = build_app(str(remind.path))
    with app.db.transaction() as session:
        session.execute(update(Lead).where(Lead.id == ids[1]).values(pipeline="Partners"))
        for lead_id in ids:
            session.add(Task(lead_id=lead_id, owner_id=lead_id, title="Call", due_at=NOW - timedelta(days=1),
                             state="open", created_at=NOW - timedelta(days=2)))
    app.close()

    assert remind.cli("remind")[0] == 0

    assert [m["To"] for m in smtp.messages] == ["ben@example.com"]


def test_a_removed_pipelines_leads_are_named_by_check_and_renamed_into_a_configured_one(env, mailbox):
    env.configure(mailbox.section(), extra='[pipeline]\nname = "Sales"\n' + PARTNERS)
    env.upgrade()
    env.cli("leads", "add", "--name", "Kim Lee", "--phone", "1", "--pipeline", "Partners", "--status", "Vetting")
    env.configure(mailbox.section(), extra='[pipeline]\nname = "Sales"\n')  # Partners removed

    code, out, _ = env.cli("check")
    assert ("FAIL  statuses: leads in pipelines no longer configured: 1 in 'Partners'; move them with: leadtap "
            "leads rename-pipeline 'Partners' NEW (NEW one of Sales)") in out
    code, out, _ = env.cli("leads", "rename-pipeline", "Partners", "sales")
    assert code == 0 and "moved 1 lead from the pipeline 'Partners' (no longer configured) to 'Sales'" in out
    code, out, _ = env.cli("check")
    assert "leads in statuses no longer configured: 1 in 'Vetting'; move them with: leadtap leads rename-status" in out
    code, out, _ = env.cli("leads", "list", "--pipeline", "Sales", "--format", "csv")
    assert "Kim Lee" in out


def test_a_task_title_and_check_see_the_leads_pipeline(env, mailbox):
    env.configure(mailbox.section(), extra=PARTNERS.replace(
        "{{ lead.company or lead.name }}'s references", "{{ lead.name }} ({{ lead.pipeline }})"))
    env.upgrade()
    env.cli("leads", "add", "--name", "Kim", "--phone", "1", "--pipeline", "Partners", "--status", "Vetting")

    code, out, _ = env.cli("leads", "show", "1")
    assert '"title": "Check Kim (Partners)"' in out  # rendered, not left as written
    code, out, _ = env.cli("check")
    assert "ok    task 1 of Vetting (Partners): renders" in out
