"""Ingest against a real Dovecot, on SQLite and PostgreSQL: every unread
message becomes a lead exactly once, extracted, assigned, with its opportunity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from leadtap.core.store.db import Lead, LedgerEntry
from leadtap.core.use_cases.listing import list_leads
from leadtap.ingest.pipeline import MailboxIngest
from leadtap.bootstrap import build_app
from leadtap.cli import main
from tests.helpers import FIXTURES, Mailbox, enquiry, plain_message, write_config

SEEN = b"\\Seen"


class Env:
    """A config pointing at test mailboxes and a test database."""

    def __init__(self, tmp_path: Path, database_url: str, capsys):
        self.path = tmp_path / "leadtap.toml"
        self.database_url = database_url
        self.capsys = capsys
        self.sections: list[str] = []
        self.extra = ""
        self.owners: str | None = None

    def configure(self, *sections: str, extra: str = "", owners: str | None = None) -> Path:
        self.sections, self.extra, self.owners = list(sections), extra, owners
        kwargs = {"owners": owners} if owners is not None else {}
        write_config(self.path, self.database_url, "\n".join(sections), extra=extra, **kwargs)
        return self.path

    def cli(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.path), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def upgrade(self) -> None:
        assert self.cli("db", "upgrade")[0] == 0

    def poll(self, *args: str) -> int:
        return self.cli("poll", *args)[0]

    def leads(self) -> list[dict]:
        app = build_app(str(self.path))
        try:
            with app.db.transaction() as session:
                return list(list_leads(session))
        finally:
            app.close()

    def ledger(self) -> list[LedgerEntry]:
        app = build_app(str(self.path))
        try:
            with app.db.transaction() as session:
                return list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)))
        finally:
            app.close()

    def execute(self, statement) -> None:
        app = build_app(str(self.path))
        try:
            with app.db.transaction() as session:
                session.execute(statement)
        finally:
            app.close()


@pytest.fixture
def env(tmp_path, database_url, capsys) -> Env:
    return Env(tmp_path, database_url, capsys)


def owners_of(leads: list[dict]) -> list[str]:
    return [lead["owner"] for lead in leads]


# --- the basic promise --------------------------------------------------------


def test_every_unread_message_becomes_a_lead_with_fields_owner_and_opportunity(env, mailbox):
    for i in range(3):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test", company=f"Co {i}"))
    env.configure(mailbox.section(source="Website"))
    env.upgrade()

    assert env.poll() == 0

    leads = env.leads()
    assert [lead["name"] for lead in leads] == ["Person 0", "Person 1", "Person 2"]
    assert [lead["email"] for lead in leads] == ["p0@client.test", "p1@client.test", "p2@client.test"]
    assert leads[0]["phone"] == "+370 600 00000" and leads[0]["company"] == "Co 0"
    assert leads[0]["message"] == "Please send a quote."
    assert {lead["status"] for lead in leads} == {"New"}
    assert {lead["source"] for lead in leads} == {"Website"}
    assert owners_of(leads) == ["ana@example.com", "ben@example.com", "cy@example.com"]
    assert [lead["opportunity"]["stage"] for lead in leads] == ["Discovery"] * 3
    assert all(SEEN in flags for flags in mailbox.flags().values())


def test_a_second_pass_creates_nothing_twice(env, mailbox):
    mailbox.append(enquiry())
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    assert env.poll() == 0
    assert len(env.leads()) == 1
    assert len(env.ledger()) == 1


def test_messages_already_read_are_left_alone_when_unread_only(env, mailbox):
    mailbox.append(enquiry(email="read@client.test"), flags=(SEEN,))
    mailbox.append(enquiry(email="new@client.test"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    assert [lead["email"] for lead in env.leads()] == ["new@client.test"]


def test_with_unread_only_false_read_messages_count_and_flags_stay_untouched(env, mailbox):
    mailbox.append(enquiry(email="read@client.test"), flags=(SEEN,))
    mailbox.append(enquiry(email="unread@client.test"))
    env.configure(mailbox.section(unread_only=False))
    env.upgrade()

    env.poll()
    assert [lead["email"] for lead in env.leads()] == ["read@client.test", "unread@client.test"]
    assert mailbox.unseen() == [2]  # leadtap changed no flag

    # UID n:* returns the last message even when nothing is newer: no repeat.
    env.poll()
    assert len(env.leads()) == 2
    mailbox.append(enquiry(email="later@client.test"))
    env.poll()
    assert [lead["email"] for lead in env.leads()][-1] == "later@client.test"
    assert len(env.leads()) == 3


def test_auto_opportunity_can_be_switched_off(env, mailbox):
    mailbox.append(enquiry())
    env.configure(mailbox.section(), extra="[opportunities]\nauto_create = false\n")
    env.upgrade()
    env.poll()
    assert env.leads()[0]["opportunity"] is None


def test_assignment_can_be_switched_off(env, mailbox):
    mailbox.append(enquiry())
    env.configure(mailbox.section(), extra="[assignment]\nenabled = false\n")
    env.upgrade()
    env.poll()
    assert env.leads()[0]["owner"] is None


def test_without_a_matching_template_the_lead_comes_from_the_message(env, mailbox):
    mailbox.append(plain_message("Could you call me back?", sender="Dana Doe <dana@client.test>", subject="Call"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    (lead,) = env.leads()
    assert (lead["name"], lead["email"], lead["message"]) == ("Dana Doe", "dana@client.test", "Could you call me back?")


def test_raw_8bit_header_text_stored_as_received_makes_a_lead_named_as_sent(env, mailbox):
    """Dovecot keeps the bytes as they came: RFC 6532 UTF-8, and windows-1252 from an old client."""
    mailbox.append((FIXTURES / "raw_utf8_headers.eml").read_bytes())
    mailbox.append((FIXTURES / "raw_windows1252_headers.eml").read_bytes())
    env.configure(mailbox.section())
    env.upgrade()

    assert env.poll() == 0

    utf8, windows_1252 = env.leads()
    assert (utf8["name"], utf8["email"], utf8["subject"], utf8["warnings"]) == (
        "Žydrūnė Šėmaitytė", "zydrune@acme.test", "Café order – 20 kėdžių", [])
    assert (windows_1252["name"], windows_1252["email"], windows_1252["subject"]) == (
        "Café “Le Monde”", "cafe@acme.test", "Café “Le Monde” – order")
    assert "Subject: 8-bit text not UTF-8, read as windows-1252" in windows_1252["warnings"]


# --- owners in turn -----------------------------------------------------------


def test_the_rotation_continues_across_a_restart(env, mailbox):
    env.configure(mailbox.section())
    env.upgrade()
    for i in range(2):
        mailbox.append(enquiry(email=f"a{i}@client.test"))
    env.poll()
    for i in range(2):
        mailbox.append(enquiry(email=f"b{i}@client.test"))
    env.poll()  # a new process would build a new App: the turn is in the database
    assert owners_of(env.leads()) == ["ana@example.com", "ben@example.com", "cy@example.com", "ana@example.com"]


def test_an_inactive_owner_gets_no_new_leads_and_keeps_the_old_ones(env, mailbox):
    env.configure(mailbox.section())
    env.upgrade()
    for i in range(2):
        mailbox.append(enquiry(email=f"a{i}@client.test"))
    env.poll()
    env.configure(mailbox.section(), owners=OWNERS_BEN_INACTIVE)
    for i in range(3):
        mailbox.append(enquiry(email=f"b{i}@client.test"))
    env.poll()
    assert owners_of(env.leads()) == [
        "ana@example.com", "ben@example.com", "cy@example.com", "ana@example.com", "cy@example.com",
    ]


def test_an_owner_removed_from_the_config_stops_receiving_leads(env, mailbox):
    env.configure(mailbox.section())
    env.upgrade()
    mailbox.append(enquiry(email="a@client.test"))
    env.poll()
    env.configure(mailbox.section(), owners=OWNERS_WITHOUT_BEN)
    for i in range(2):
        mailbox.append(enquiry(email=f"b{i}@client.test"))
    env.poll()
    assert owners_of(env.leads()) == ["ana@example.com", "cy@example.com", "ana@example.com"]


def test_the_owner_follows_the_contact_of_a_closed_lead_and_takes_no_turn(env, mailbox):
    env.configure(mailbox.section())
    env.upgrade()
    mailbox.append(enquiry(email="jo@client.test"))
    mailbox.append(enquiry(email="kim@client.test"))
    env.poll()
    env.execute(update(Lead).where(Lead.contact == "jo@client.test").values(status="Disqualified"))
    mailbox.append(enquiry(email="JO@client.test", message="Back again"))
    mailbox.append(enquiry(email="lee@client.test"))
    env.poll()
    leads = env.leads()
    assert len(leads) == 4
    assert owners_of(leads) == ["ana@example.com", "ben@example.com", "ana@example.com", "cy@example.com"]


# --- replies and repeat senders -----------------------------------------------


def test_a_reply_joins_the_lead_of_its_thread(env, mailbox):
    mailbox.append(enquiry(message_id="<first@forms.example.com>"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    mailbox.append(
        plain_message(
            "Any news?",
            sender="Jo <jo.private@elsewhere.test>",
            subject="Re: New enquiry",
            headers={"In-Reply-To": "<first@forms.example.com>", "References": "<first@forms.example.com>"},
        )
    )
    env.poll()
    assert len(env.leads()) == 1
    entry = env.ledger()[-1]
    assert (entry.outcome, entry.lead_id, entry.reason) == ("attached", 1, "reply")
    code, out, _ = env.cli("leads", "show", "1")
    shown = json.loads(out)
    assert [a["kind"] for a in shown["activities"]] == ["created", "reply"]
    assert len(shown["thread"]) == 2


def test_a_repeat_sender_with_an_open_lead_is_attached_not_duplicated(env, mailbox):
    mailbox.append(enquiry(email="jo@client.test", message="First"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    mailbox.append(enquiry(email="jo@client.test", message="Second"))
    env.poll()
    assert len(env.leads()) == 1
    assert env.ledger()[-1].outcome == "attached"


# --- not leads ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, sender, reason",
    [
        ({"Auto-Submitted": "auto-replied"}, "Jo <jo@client.test>", "auto-reply"),
        ({"X-Autoreply": "yes"}, "Jo <jo@client.test>", "auto-reply"),
        ({"Precedence": "bulk"}, "News <news@client.test>", "bulk"),
        ({"List-Id": "<news.client.test>"}, "News <news@client.test>", "mailing list"),
        ({}, "Mail Delivery System <MAILER-DAEMON@mx.test>", "bounce"),
        ({"X-Leadtap": "reminder"}, "leadtap <crm@example.com>", "leadtap"),
    ],
)
def test_noise_is_recorded_as_not_a_lead_and_marked_read(env, mailbox, headers, sender, reason):
    mailbox.append(plain_message("Out of office until Monday", sender=sender, headers=headers))
    env.configure(mailbox.section())
    env.upgrade()
    assert env.poll() == 0
    assert env.leads() == []
    (entry,) = env.ledger()
    assert entry.outcome == "not_lead" and reason in entry.reason
    assert SEEN in mailbox.flags()[1]


# --- failures -----------------------------------------------------------------


def test_a_broken_message_at_the_lowest_uid_does_not_stop_the_others(env, mailbox):
    mailbox.append((FIXTURES / "unreadable.eml").read_bytes())
    mailbox.append(enquiry(email="one@client.test"))
    mailbox.append(enquiry(email="two@client.test"))
    env.configure(mailbox.section(), extra="[ingest]\nmax_attempts = 2\n")
    env.upgrade()

    assert env.poll() == 1  # the exit code says something failed
    assert [lead["email"] for lead in env.leads()] == ["one@client.test", "two@client.test"]
    broken = env.ledger()[0]
    assert (broken.uid, broken.outcome, broken.attempts) == (1, "failed", 1)
    assert "no header block" in broken.error
    assert mailbox.unseen() == [1]

    env.poll()
    assert env.ledger()[0].attempts == 2  # retried once more, then set aside
    assert env.poll() == 0
    assert env.ledger()[0].attempts == 2

    code, out, _ = env.cli("failed", "list")
    assert "uid 1" in out and "set aside" in out


def test_failed_retry_gives_a_message_its_attempts_back(env, mailbox):
    mailbox.append((FIXTURES / "unreadable.eml").read_bytes())
    env.configure(mailbox.section(), extra="[ingest]\nmax_attempts = 1\n")
    env.upgrade()
    env.poll()
    entry_id = env.ledger()[0].id
    code, out, _ = env.cli("failed", "retry", str(entry_id))
    assert code == 1 and "1 failed" in out
    assert env.ledger()[0].attempts == 1


def test_a_message_over_the_size_limit_is_recorded_without_download(env, mailbox):
    mailbox.append(enquiry(message="x" * 5000))
    mailbox.append(enquiry(email="small@client.test"))
    env.configure(mailbox.section(), extra='[ingest]\nmax_message_size = "2KB"\n')
    env.upgrade()
    env.poll()
    assert [lead["email"] for lead in env.leads()] == ["small@client.test"]
    large = env.ledger()
    assert [(e.uid, e.outcome, e.reason) for e in large if e.outcome == "failed"] == [(1, "failed", "too large")]
    assert mailbox.unseen() == [1]


class Crash(BaseException):
    """Stands for the process dying: nothing catches it."""


class CrashOnFlag:
    def __init__(self, inner):
        self.inner = inner

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def mark_seen(self, uids):
        if uids:
            raise Crash("killed between commit and flag")


def test_a_crash_between_commit_and_flag_creates_no_second_lead(env, mailbox):
    mailbox.append(enquiry(email="one@client.test"))
    mailbox.append(enquiry(email="two@client.test"))
    env.configure(mailbox.section())
    env.upgrade()
    app = build_app(str(env.path))
    try:
        db = app.ready_database()
        box = app.config.mailboxes[0]
        crashing = MailboxIngest(app.config, box, db, [app.templates["contact-form"]],
                                 lambda b: CrashOnFlag(app.open_mailbox(b)), rules=app.lead_rules())
        with pytest.raises(Crash):
            crashing.run()
    finally:
        app.close()
    assert len(env.leads()) == 2 and mailbox.unseen() == [1, 2]

    assert env.poll() == 0
    assert len(env.leads()) == 2
    assert mailbox.unseen() == []


def test_a_refused_login_on_one_mailbox_leaves_the_other_working(env, mailbox, dovecot):
    mailbox.append(enquiry())
    bad = mailbox.section(name="partners", password="wrong-password-123")
    env.configure(bad, mailbox.section(name="sales"))
    env.upgrade()
    code, out, err = env.cli("poll")
    assert code == 1
    assert "partners: not polled" in out and "login refused" in out
    assert "sales: 1 new lead" in out
    assert "wrong-password-123" not in out + err
    assert err.count("pass_failed") == 1


def test_an_unreachable_server_is_reported_and_the_pass_ends(env, mailbox):
    env.configure(mailbox.section(port=1))
    env.upgrade()
    code, out, _ = env.cli("poll")
    assert code == 1 and "connection failed" in out


def test_poll_refuses_an_out_of_date_schema(env, mailbox):
    env.configure(mailbox.section())
    code, _, err = env.cli("poll")
    assert code == 1 and "leadtap db upgrade" in err
    assert "Traceback" not in err


# --- the same message twice ---------------------------------------------------


def test_a_uidvalidity_change_creates_no_second_lead(env, mailbox):
    raws = [enquiry(email=f"v{i}@client.test") for i in range(2)]
    with mailbox.client() as client:
        client.create_folder("Leads")
    for raw in raws:
        mailbox.append(raw, folder="Leads")
    env.configure(mailbox.section(folder="Leads"))
    env.upgrade()
    env.poll()
    with mailbox.client() as client:  # the folder is recreated: new UIDVALIDITY
        client.delete_folder("Leads")
        client.create_folder("Leads")
    for raw in raws:
        mailbox.append(raw, folder="Leads")
    assert env.poll() == 0
    assert len(env.leads()) == 2
    assert [e.outcome for e in env.ledger()] == ["lead", "lead", "duplicate", "duplicate"]
    assert len({e.uidvalidity for e in env.ledger()}) == 2
    assert all(SEEN in flags for flags in mailbox.flags("Leads").values())


def test_one_message_in_two_watched_mailboxes_is_one_lead(env, mailbox, dovecot):
    other = Mailbox(dovecot, mailbox.user + "b", dovecot.password)
    raw = enquiry()
    mailbox.append(raw)
    other.append(raw)
    env.configure(mailbox.section(name="sales"), other.section(name="info"))
    env.upgrade()
    env.poll()
    assert len(env.leads()) == 1
    assert sorted(e.outcome for e in env.ledger()) == ["duplicate", "lead"]
    assert other.unseen() == []


def test_two_messages_sharing_a_message_id_stay_two(env, mailbox):
    mailbox.append(enquiry(email="a@client.test", subject="New enquiry A", message_id="<same@forms.test>"))
    mailbox.append(enquiry(email="b@client.test", subject="New enquiry B", message_id="<same@forms.test>"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    assert [lead["email"] for lead in env.leads()] == ["a@client.test", "b@client.test"]


# --- TLS ----------------------------------------------------------------------


def test_tls_with_certificate_verification(env, mailbox, dovecot):
    mailbox.append(enquiry())
    env.configure(mailbox.section(security="tls", port=dovecot.tls_port, ca_file=str(dovecot.ca_pem)))
    env.upgrade()
    assert env.poll() == 0
    assert len(env.leads()) == 1


def test_tls_refuses_a_certificate_it_cannot_verify(env, mailbox, dovecot):
    mailbox.append(enquiry())
    env.configure(mailbox.section(security="tls", port=dovecot.tls_port))
    env.upgrade()
    code, out, _ = env.cli("poll")
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in out
    assert env.leads() == []


# --- the command line ---------------------------------------------------------


def test_leads_list_as_json_and_csv(env, mailbox):
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    code, out, _ = env.cli("leads", "list", "--format", "json")
    (lead,) = json.loads(out)
    for key in ("id", "name", "email", "phone", "company", "message", "fields", "source", "status", "owner",
                "opportunity", "mailbox", "received_at"):
        assert key in lead
    assert lead["owner"] == "ana@example.com" and lead["opportunity"]["stage"] == "Discovery"
    code, out, _ = env.cli("leads", "list", "--format", "csv", "--owner", "ana@example.com")
    assert out.splitlines()[0].startswith("id,name,email") and "jo@client.test" in out
    code, out, _ = env.cli("leads", "list", "--status", "Qualified")
    assert "(0 leads)" in out


def test_check_reports_each_connection(env, mailbox):
    env.configure(mailbox.section(name="sales"), mailbox.section(name="broken", password="nope"))
    env.upgrade()
    code, out, _ = env.cli("check")
    assert code == 1
    assert "ok    database" in out and "ok    mailbox sales" in out and "FAIL  mailbox broken" in out


def test_every_message_event_carries_mailbox_uid_and_lead(env, mailbox):
    mailbox.append(enquiry())
    env.configure(mailbox.section())
    env.upgrade()
    _, _, err = env.cli("poll")
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (created,) = [e for e in events if e["event"] == "message_lead"]
    assert (created["mailbox"], created["uid"], created["lead_id"]) == ("sales", 1, 1)


OWNERS_BEN_INACTIVE = """
[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
roles = ["sales"]
active = false

[[owners]]
email = "cy@example.com"
roles = ["sales"]
"""

OWNERS_WITHOUT_BEN = """
[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[owners]]
email = "cy@example.com"
roles = ["sales"]
"""


def test_a_message_that_breaks_the_batch_write_is_set_aside_alone(env, mailbox, monkeypatch):
    from leadtap.core.use_cases.batch import LeadBatch

    original = LeadBatch.create

    def create(self, ref, message, draft, decided):
        if draft.name == "Boom":
            raise RuntimeError("a bug met by this message only")
        return original(self, ref, message, draft, decided)

    monkeypatch.setattr(LeadBatch, "create", create)
    mailbox.append(enquiry(name="Good One", email="one@client.test"))
    mailbox.append(enquiry(name="Boom", email="boom@client.test"))
    mailbox.append(enquiry(name="Good Two", email="two@client.test"))
    env.configure(mailbox.section())
    env.upgrade()
    assert env.poll() == 1
    assert [lead["name"] for lead in env.leads()] == ["Good One", "Good Two"]
    assert owners_of(env.leads()) == ["ana@example.com", "ben@example.com"]  # the failed one took no turn
    failed = [e for e in env.ledger() if e.outcome == "failed"]
    assert [(e.uid, e.attempts) for e in failed] == [(2, 1)]
    assert "a bug met by this message only" in failed[0].error
    assert mailbox.unseen() == [2]


def test_an_unreachable_database_leaves_every_message_unread(env, mailbox):
    mailbox.append(enquiry())
    env.configure(mailbox.section())
    env.database_url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    env.configure(mailbox.section())
    code, _, err = env.cli("poll")
    assert code == 1 and "cannot reach the database" in err
    assert "Traceback" not in err
    assert mailbox.unseen() == [1]


@pytest.mark.parametrize("parallel", [True, False])
def test_a_backlog_gives_the_same_leads_with_or_without_the_parsing_process(env, mailbox, parallel):
    mailbox.append((FIXTURES / "unreadable.eml").read_bytes())
    for i in range(8):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    mailbox.append(plain_message("Away", headers={"Auto-Submitted": "auto-replied"}))
    extra = f"[ingest]\nbatch_size = 2\nparallel_parsing = {'true' if parallel else 'false'}\n"
    env.configure(mailbox.section(), extra=extra)
    env.upgrade()
    assert env.poll() == 1
    leads = env.leads()
    assert [lead["name"] for lead in leads] == [f"Person {i}" for i in range(8)]
    assert owners_of(leads) == ["ana@example.com", "ben@example.com", "cy@example.com"] * 2 + [
        "ana@example.com", "ben@example.com"]
    assert [e.outcome for e in env.ledger()] == ["failed"] + ["lead"] * 8 + ["not_lead"]
    assert mailbox.unseen() == [1]


def test_a_long_pass_logs_its_progress(env, mailbox):
    for i in range(5):
        mailbox.append(enquiry(email=f"p{i}@client.test"))
    env.configure(mailbox.section(), extra="[ingest]\nbatch_size = 2\nparallel_parsing = false\n")
    env.upgrade()
    _, _, err = env.cli("poll")
    progress = [json.loads(line) for line in err.splitlines() if '"pass_progress"' in line]
    assert [(p["done"], p["total"]) for p in progress] == [(2, 5), (4, 5), (5, 5)]


def test_extract_shows_what_a_template_finds_in_a_saved_message(env, mailbox, tmp_path):
    env.configure(mailbox.section())
    saved = tmp_path / "enquiry.eml"
    saved.write_bytes(enquiry(name="Jo Smith", email="jo@client.test", company="ACME"))
    code, out, _ = env.cli("extract", "--template", "contact-form", str(saved))
    found = json.loads(out)
    assert code == 0 and found["matched"] is True
    assert found["fields"]["name"] == "Jo Smith" and found["fields"]["company"] == "ACME"

    saved.write_bytes(plain_message("Name: Jo\nPhone: 123\n"))
    code, out, _ = env.cli("extract", "--template", "contact-form", str(saved))
    found = json.loads(out)
    assert code == 1 and found["matched"] is False
    assert found["missing"] == ["email", "message"]


def test_extract_names_an_unknown_template(env, mailbox, tmp_path):
    env.configure(mailbox.section())
    saved = tmp_path / "enquiry.eml"
    saved.write_bytes(enquiry())
    code, _, err = env.cli("extract", "--template", "nope", str(saved))
    assert code == 2 and "no extraction template named 'nope'" in err


def test_an_imap_server_that_never_answers_times_out(env, mailbox):
    from tests.smtp import SilentServer

    with SilentServer() as silent:
        env.configure(mailbox.section(port=silent.port), extra='[ingest]\ntimeout = "1s"\n')
        env.upgrade()
        code, out, _ = env.cli("poll")
    assert code == 1 and "timed out" in out


HOSTILE = [
    # a lone surrogate in an encoded subject
    b"From: x@client.test\r\nSubject: =?unicode_escape?q?\\ud800?=\r\nMessage-ID: <s@client.test>\r\n\r\nhi\r\n",
    # a codec that fails in its own way
    b"From: x@client.test\r\nSubject: hi\r\nContent-Type: text/plain; charset=undefined\r\n\r\nhi\r\n",
    # a NUL in the subject (PostgreSQL refuses NUL in text)
    b"From: Jo <jo@client.test>\r\nSubject: =?utf-8?q?Hi=00there?=\r\nMessage-ID: <n@client.test>\r\n\r\nhi\r\n",
    # a Message-ID far longer than any column
    b"From: x@client.test\r\nSubject: long\r\nMessage-ID: <" + b"a" * 1500 + b"@client.test>\r\n\r\nhi\r\n",
    # seventy thousand references
    b"From: x@client.test\r\nSubject: refs\r\nReferences: "
    + b" ".join(b"<r%d@client.test>" % i for i in range(70000)) + b"\r\n\r\nhi\r\n",
]


def test_hostile_messages_fail_or_pass_alone_and_never_block_the_mailbox(env, mailbox):
    mailbox.append(enquiry(email="before@client.test"))
    for raw in HOSTILE:
        mailbox.append(raw)
    mailbox.append(enquiry(email="after@client.test"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    entries = env.ledger()
    assert len(entries) == len(HOSTILE) + 2  # every message has its ledger row
    emails = [lead["email"] for lead in env.leads()]
    assert "before@client.test" in emails and "after@client.test" in emails
    failed = [e for e in entries if e.outcome == "failed"]
    assert all(e.attempts == 1 and e.error for e in failed)
    env.poll()  # nothing is stuck: a second pass only retries the failed ones
    assert len(env.ledger()) == len(HOSTILE) + 2


def test_text_is_made_storable_before_it_is_written():
    from leadtap.core.store.services import clip, clip_all

    assert clip("Hi\x00 there") == "Hi there"  # PostgreSQL refuses NUL in text
    assert clip("a\ud800b") == "a?b"  # a lone surrogate encodes nowhere
    assert clip("x" * 400, 320) == "x" * 320
    assert clip_all({"note\x00": "a\x00b", "n": 3}) == {"note": "ab", "n": 3}


def test_notifications_from_a_form_sender_that_miss_their_template_stay_separate_leads(env, mailbox):
    for text in ("Visitor one wrote", "Visitor two wrote", "Visitor three wrote"):
        mailbox.append(plain_message(text, sender="Website <noreply@forms.example.com>", subject="Enquiry"))
    templates = ('[[extraction_templates]]\nname = "contact-form"\nfrom = "*@forms.example.com"\n'
                 'body = """\nEmail: {{ email }}\n"""\n')
    write_config(env.path, env.database_url, mailbox.section(), templates=templates)
    env.upgrade()
    env.poll()
    leads = env.leads()
    assert [lead["message"] for lead in leads] == ["Visitor one wrote", "Visitor two wrote", "Visitor three wrote"]
    assert {lead["email"] for lead in leads} == {None}
    assert leads[0]["fields"]["sender"] == "Website <noreply@forms.example.com>"


class FlagsRefused(CrashOnFlag):
    def mark_seen(self, uids):
        if uids:
            from leadtap.core.errors import ImapError
            raise ImapError("mailbox 'sales': server refused while marking messages read: [READ-ONLY]")


def test_a_server_that_refuses_the_seen_flag_does_not_stop_the_pass(env, mailbox):
    for i in range(5):
        mailbox.append(enquiry(email=f"p{i}@client.test"))
    env.configure(mailbox.section(), extra="[ingest]\nbatch_size = 2\nparallel_parsing = false\n")
    env.upgrade()
    app = build_app(str(env.path))
    try:
        db = app.ready_database()
        box = app.config.mailboxes[0]
        report = MailboxIngest(app.config, box, db, [app.templates["contact-form"]],
                               lambda b: FlagsRefused(app.open_mailbox(b)), rules=app.lead_rules()).run()
    finally:
        app.close()
    assert report.error is None and len(env.leads()) == 5
    assert env.poll() == 0 and len(env.leads()) == 5  # the next pass only flags them
    assert mailbox.unseen() == []


def test_a_parsing_process_that_dies_costs_its_batch_one_attempt_and_nothing_else(env, mailbox, monkeypatch):
    import os
    import signal

    for i in range(8):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    env.configure(mailbox.section(), extra="[ingest]\nbatch_size = 2\nparallel_parsing = true\n")
    env.upgrade()
    fetches = []
    real_fetch = MailboxIngest.fetch

    def fetch_then_kill_the_parser(self, imap, uids):
        fetched = real_fetch(self, imap, uids)
        fetches.append(uids)
        if len(fetches) == 2:  # the first batch is with the parser now: kill it
            with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
                for child in f.read().split():
                    with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                        if b"spawn_main" in cmdline.read():  # the parser, not Dovecot
                            os.kill(int(child), signal.SIGKILL)
        return fetched

    monkeypatch.setattr(MailboxIngest, "fetch", fetch_then_kill_the_parser)
    app = build_app(str(env.path))
    try:
        app.ready_database()
        report = app.mailbox_ingest(app.config.mailboxes[0].name).run()
    finally:
        app.close()
    assert report.error is None
    failed = [e for e in env.ledger() if e.outcome == "failed"]
    assert failed and all(e.attempts == 1 and "parsing process died" in e.error for e in failed)
    assert len(env.leads()) + len(failed) == 8
    monkeypatch.setattr(MailboxIngest, "fetch", real_fetch)
    code, out, err = env.cli("poll")
    assert code == 0, out + err[-2000:]  # the next pass takes them in
    assert len(env.leads()) == 8


def test_every_poll_logs_one_line_also_when_it_finds_nothing(env, mailbox):
    env.configure(mailbox.section())
    env.upgrade()

    code, _, err = env.cli("poll")

    (line,) = [json.loads(line) for line in err.splitlines() if '"pass_finished"' in line]
    assert code == 0 and line["mailbox"] == "sales" and line["seen"] == 0 and line["lead"] == 0
    assert line["seconds"] >= 0 and line["level"] == "info"
    mailbox.append(enquiry())
    (line,) = [json.loads(line) for line in env.cli("poll")[2].splitlines() if '"pass_finished"' in line]
    assert (line["seen"], line["lead"], line["failed"]) == (1, 1, 0)


def test_a_poll_on_a_terminal_shows_its_progress(env, mailbox, monkeypatch):
    import sys

    for i in range(5):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    env.configure(mailbox.section(), extra="[ingest]\nbatch_size = 2\n")
    env.upgrade()
    env.capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)

    code, out, err = env.cli("poll")

    assert code == 0 and "5 new leads" in out
    shown = [part.removeprefix("\033[K") for part in err.split("\r")]
    assert [p.split(" messages")[0] for p in shown if p.startswith("sales:")] == ["sales: 2/5", "sales: 4/5"]
    assert "/s" in shown[1] and err.count("\r\033[K") == 3  # two batches shown, then the line cleared


def mailbox_state(env: Env):
    from leadtap.core.store.db import MailboxState

    app = build_app(str(env.path))
    try:
        with app.db.transaction() as session:
            return session.get(MailboxState, "sales")
    finally:
        app.close()


def refuse_rows(env: Env, table: str, when: str = "TRUE", event: str = "INSERT") -> None:
    """Every ``event`` (INSERT or UPDATE) on ``table`` where ``when`` holds of
    NEW fails, as a locked or full disk would fail it; ``allow_rows`` ends it."""
    from sqlalchemy import text

    if env.database_url.startswith("sqlite"):
        env.execute(text(f"CREATE TRIGGER refuse_rows BEFORE {event} ON {table} WHEN {when} "
                         "BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END"))
    else:
        env.execute(text("CREATE OR REPLACE FUNCTION refuse_rows() RETURNS trigger AS $$ BEGIN "
                         f"IF {when} THEN RAISE EXCEPTION 'disk I/O error (injected)'; END IF; "
                         "RETURN NEW; END $$ LANGUAGE plpgsql"))
        env.execute(text(f"CREATE TRIGGER refuse_rows BEFORE {event} ON {table} FOR EACH ROW "
                         "EXECUTE FUNCTION refuse_rows()"))


def allow_rows(env: Env, table: str) -> None:
    from sqlalchemy import text

    env.execute(text("DROP TRIGGER refuse_rows" + ("" if env.database_url.startswith("sqlite") else f" ON {table}")))


@pytest.mark.parametrize("unread_only", [False, True])
def test_a_message_that_cannot_even_be_recorded_as_failed_is_never_passed_over(env, mailbox, unread_only):
    """Its write and both "failed" records fail (a locked or full disk): it has
    no ledger row. The mail after it still comes in; the mailbox's last UID
    stays below it (unread_only = false) or it stays unread (true), so the
    next pass reads it again."""
    for i in range(3):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    env.configure(mailbox.section(unread_only=unread_only))
    env.upgrade()
    first, second, third = sorted(mailbox.flags())
    refuse_rows(env, "messages", f"NEW.uid = {second}")  # its lead, its "failed" record, its bare record

    code, out, err = env.cli("poll")

    assert code == 1 and f"2 new leads, UID {second} not recorded" in out
    assert [e.uid for e in env.ledger()] == [first, third]
    if unread_only:
        assert mailbox.unseen() == [second]
    else:
        assert mailbox_state(env).last_uid == first  # not past the message without a ledger row
    allow_rows(env, "messages")

    assert env.poll() == 0
    assert [lead["name"] for lead in env.leads()] == ["Person 0", "Person 2", "Person 1"]
    assert sorted(e.uid for e in env.ledger()) == [first, second, third]
    assert env.poll() == 0 and len(env.leads()) == 3


def test_polling_an_inactive_mailbox_by_name_is_refused_saying_why(env, mailbox):
    mailbox.append(enquiry())
    env.configure(mailbox.section(active=False))
    env.upgrade()

    code, out, err = env.cli("poll", "--mailbox", "sales")

    assert code == 2 and "mailbox 'sales' is not active (active = false" in err
    assert env.leads() == [] and env.cli("poll", "--mailbox", "nope")[0] == 2


def test_a_retried_message_whose_row_cannot_be_updated_does_not_hold_up_the_mailbox(env, mailbox):
    """It has a ledger row (failed), so it is not passed over: the mail after it comes in."""
    mailbox.append(enquiry(name="Retry", email="retry@client.test"))
    env.configure(mailbox.section(unread_only=False))
    env.upgrade()
    (uid,) = mailbox.flags()
    refuse_rows(env, "leads")
    assert env.poll() == 1
    allow_rows(env, "leads")
    refuse_rows(env, "messages", f"NEW.uid = {uid}", event="UPDATE")  # its retry cannot be recorded
    for i in range(2):
        mailbox.append(enquiry(name=f"Later {i}", email=f"later{i}@client.test"))
    assert env.poll() == 1  # it failed again
    assert [lead["name"] for lead in env.leads()] == ["Later 0", "Later 1"]


def test_failed_retry_leaves_an_inactive_mailbox_alone_and_says_so(env, mailbox):
    mailbox.append(enquiry(name="Broken", email="broken@client.test"))
    env.configure(mailbox.section())
    env.upgrade()
    refuse_rows(env, "leads")
    assert env.poll() == 1
    allow_rows(env, "leads")
    env.configure(mailbox.section(active=False))
    mailbox.append(enquiry(name="Unrelated", email="unrelated@client.test"))

    code, out, _ = env.cli("failed", "retry", "--all")

    assert "mailbox 'sales' is not active: its failed messages are retried when it is polled again" in out
    assert env.leads() == []


class BodyLeftOut(CrashOnFlag):
    """A server that answers UID FETCH BODY.PEEK[] with OK but leaves one message out."""

    def __init__(self, inner, left_out: int):
        super().__init__(inner)
        self.left_out = left_out

    def mark_seen(self, uids):
        return self.inner.mark_seen(uids)

    def bodies(self, uids):
        return {uid: raw for uid, raw in self.inner.bodies(uids).items() if uid != self.left_out}


def test_a_message_the_server_left_out_of_its_answer_is_recorded_as_failed_and_read_again(env, mailbox):
    for i in range(3):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    env.configure(mailbox.section(unread_only=False))
    env.upgrade()
    first, second, third = sorted(mailbox.flags())
    app = build_app(str(env.path))
    try:
        report = MailboxIngest(app.config, app.config.mailboxes[0], app.ready_database(),
                               [app.templates["contact-form"]], lambda b: BodyLeftOut(app.open_mailbox(b), second),
                               rules=app.lead_rules()).run()
    finally:
        app.close()
    assert report.failed and "1 failed" in report.summary()
    (left_out,) = [e for e in env.ledger() if e.uid == second]
    assert left_out.outcome == "failed" and "the server sent no body" in left_out.error

    assert env.poll() == 0
    assert [lead["name"] for lead in env.leads()] == ["Person 0", "Person 2", "Person 1"]
