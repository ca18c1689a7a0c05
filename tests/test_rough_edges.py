"""Rough edges a new user hit (issue 15 §5), each held by a test: the
command line says what is wrong instead of doing something quietly."""

from __future__ import annotations

from tests.helpers import write_config
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)


def test_check_on_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path, capsys):
    from leadtap.cli import main

    database = tmp_path / "nowhere.db"
    config = write_config(tmp_path / "leadtap.toml", f"sqlite:///{database}")

    code = main(["--config", str(config), "check"])
    out = capsys.readouterr().out

    assert code == 1 and f"there is no SQLite database at '{database}'; run: leadtap db upgrade" in out
    assert not database.exists()
    assert main(["--config", str(config), "leads", "list"]) == 1 and not database.exists()
    assert main(["--config", str(config), "db", "upgrade"]) == 0 and database.exists()


def test_listing_by_an_unknown_owner_is_refused_with_the_owners_known(env, mailbox):
    env.configure(mailbox.section())
    env.upgrade()  # no poll yet: the config's owners are known all the same

    for command in (["leads", "list"], ["tasks", "list"], ["opportunities", "list"], ["onboarding", "list"]):
        code, _, err = env.cli(*command, "--owner", "nobody@example.com")
        assert code == 2 and "unknown owner 'nobody@example.com'; expected one of ana@example.com, ben@example.com" in err
    assert env.cli("leads", "list", "--owner", "Ana@Example.com")[0] == 0


def test_extract_names_the_filter_that_refused_the_message(env, tmp_path):
    import json

    from tests.helpers import CONTACT_FORM, enquiry

    write_config(env.path, env.database_url, templates=f'[[extraction_templates]]\nname = "form"\n'
                 f'from = "*@partner.example.com"\nsubject = "New enquiry*"\nbody = """{CONTACT_FORM}"""\n')
    saved = tmp_path / "m.eml"
    saved.write_bytes(enquiry())

    code, out, _ = env.cli("extract", "--template", "form", str(saved))

    shown = json.loads(out)
    assert code == 1 and shown["filters_pass"] is False
    assert shown["filter_refused"] == ("from = '*@partner.example.com' does not match the sender "
                                       "'noreply@forms.example.com'")


def test_a_digests_subject_counts_leads_and_tasks_apart():
    from leadtap.scheduler.render import Renderer, sample_context, sample_item

    def subject(*items):
        return Renderer().render("digest", sample_context(*items)).subject

    assert subject(sample_item()) == "1 lead waiting for you"
    assert subject(sample_item(), sample_item(task=True), sample_item(task=True)) == "1 lead and 2 tasks waiting for you"
    assert subject(sample_item(task=True)) == "1 task waiting for you"


def test_a_confirmation_says_re_once_whatever_prefixes_the_reply_had():
    from leadtap.core.use_cases.views import re_subject

    assert re_subject("Re: RE: Aw: New lead: Jo") == "Re: New lead: Jo"
    assert re_subject("SV: [12] x") == "Re: [12] x" and re_subject(None) == "Re: your reply"


def test_a_pass_that_stopped_says_what_it_did_before():
    from leadtap.core.rules.model import Outcome
    from leadtap.ingest.report import PassReport

    report = PassReport("sales", error="database unavailable: server closed the connection")
    assert report.summary() == "sales: not polled: database unavailable: server closed the connection"
    report.counts[Outcome.LEAD] += 3
    assert report.summary() == "sales: 3 new leads, then stopped: database unavailable: server closed the connection"
