"""Owners act by replying, on real servers (Dovecot, aiosmtpd, SQLite and
PostgreSQL): a reminder answered with /disqualify moves the lead and makes
its follow-up, one confirmation comes back; forged, tampered, stale and
misdirected replies change nothing and get no mail; a reply seen twice — by
two workers, or in two mailboxes — runs once."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select

from leadtap.bootstrap import build_app
from leadtap.core.store.db import CommandReply, DigestToken, Lead
from leadtap.core.logs import configure_logging
from tests.helpers import enquiry, plain_message
from tests.smtp import SmtpServer
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)
from tests.test_workers import run_at_once, start_poll

SECRET = "s3cret-for-the-tests-only-0123456789abcdef"


def commands_config(smtp_port: int, secret_file, extra: str = "") -> str:
    return f'''
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
timeout = "5s"
from = "leadtap <crm@example.com>"

[notifications]
new_lead = "new_lead"

[commands]
secret_file = "{secret_file}"
address = "crm@example.com"
{extra}

[pipeline]
admins = ["cy@example.com"]
qualified = "Qualified"
disqualified = "Disqualified"
disqualify_reasons = ["No budget", "Bad timing", "Other"]
other_reason = "Other"
follow_up = {{ reasons = ["Bad timing"], after = "90d" }}

[reminders]
[[reminders.rules]]
name = "untouched"
status = "New"
after = "1d"
'''


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def replying(env, mailbox, smtp, tmp_path):
    """Commands on; a lead made (Jo Smith → ana) and its new-lead email sent."""
    (tmp_path / "commands.secret").write_text(SECRET)
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test", company="Client Ltd"))
    env.configure(mailbox.section(), extra=commands_config(smtp.port, tmp_path / "commands.secret"))
    env.upgrade()
    code, out, err = env.cli("poll")
    assert code == 0 and "notifications: 1 sent" in out, out + err
    return env


def reply(to_email, body: str, sender: str = "Ana <ana@example.com>", headers: dict | None = None) -> bytes:
    """An answer to ``to_email`` (a message leadtap sent), threaded as mail clients thread it."""
    thread = {"In-Reply-To": to_email["Message-ID"], "References": to_email["Message-ID"]}
    return plain_message(body + f"\n\nOn Tue, 24 Nov 2026, leadtap <crm@example.com> wrote:\n> {to_email['Subject']}\n",
                         sender=sender, subject="Re: " + to_email["Subject"], to="crm@example.com",
                         headers={**thread, **(headers or {})})


def shown(env: Env, lead_id: int) -> dict:
    code, out, err = env.cli("leads", "show", str(lead_id))
    assert code == 0, err
    return json.loads(out)


def lead(env: Env, lead_id: int) -> Lead | None:
    app = build_app(str(env.path))
    try:
        with app.db.transaction() as session:
            return session.get(Lead, lead_id)
    finally:
        app.close()


def replies(env: Env) -> list[CommandReply]:
    app = build_app(str(env.path))
    try:
        with app.db.transaction() as session:
            return list(session.scalars(select(CommandReply).order_by(CommandReply.id)))
    finally:
        app.close()


def sweep(env: Env, at: datetime):
    configure_logging()  # to this test's stderr (the fixture's poll logged to the set-up's)
    app = build_app(str(env.path))
    try:
        return app.reminder_sweep(clock=lambda: at).run()
    finally:
        app.close()


def test_every_leadtap_email_carries_a_token_and_the_commands_address(replying, smtp):
    (new_lead,) = smtp.messages
    assert new_lead["Message-ID"].startswith("<lt1.L1.") and new_lead["Reply-To"] == "crm@example.com"
    assert "/status STATUS" in new_lead.get_body(("plain",)).get_content()
    sweep(replying, datetime.now(timezone.utc) + timedelta(days=2))
    reminder = smtp.messages[-1]
    assert reminder["X-Leadtap"] == "reminder" and reminder["Message-ID"].startswith("<lt1.L1.")


def test_a_reminder_answered_with_disqualify_moves_the_lead_and_one_confirmation_comes_back(replying, smtp, mailbox):
    sweep(replying, datetime.now(timezone.utc) + timedelta(days=2))
    reminder = smtp.messages[-1]
    mailbox.append(reply(reminder, "/disqualify Bad timing\n\nThey start budgeting in March."))

    code, out, err = replying.cli("poll")

    assert code == 0 and "1 not a lead" in out and "notifications: 1 sent" in out, out + err
    moved = lead(replying, 1)
    assert moved.status == "Disqualified"
    follow_up = lead(replying, 2)
    assert follow_up.follow_up_of == 1 and follow_up.snoozed_until is not None
    notes = [a for a in shown(replying, 1)["activities"] if a["kind"] == "note"]
    assert [n["summary"] for n in notes] == ["They start budgeting in March."]
    assert notes[0]["details"]["by"] == "ana@example.com" and notes[0]["details"]["how"] == "mail"

    confirmation = smtp.messages[-1]
    sent_reply = replies(replying)[0]
    assert confirmation["To"] == "ana@example.com"
    assert confirmation["In-Reply-To"] == sent_reply.message_id
    assert confirmation["Auto-Submitted"] == "auto-replied" and confirmation["X-Leadtap"] == "confirmation"
    assert confirmation["Message-ID"].startswith("<lt1.L1.")  # a fresh token: the thread can go on
    body = confirmation.get_body(("plain",)).get_content()
    assert "/disqualify Bad timing\n    done: New → Disqualified (Bad timing)" in body
    assert "(note)\n    done: note added" in body and "Status:  Disqualified" in body

    mailbox.append(confirmation.as_bytes())  # leadtap's own confirmation in the watched mailbox
    replying.cli("poll")
    assert len([m for m in smtp.messages if m["X-Leadtap"] == "confirmation"]) == 1
    assert lead(replying, 3) is None


def test_refused_commands_are_said_back_with_the_rules_words_and_the_rest_still_runs(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "/status Contacted\n/disqualify Other\n/done 1\n/frobnicate\n/snooze 2d"))

    replying.cli("poll")

    assert lead(replying, 1).status == "Contacted" and lead(replying, 1).snoozed_until is not None
    body = smtp.messages[-1].get_body(("plain",)).get_content()
    assert "/disqualify Other\n    refused: lead 1: the reason 'Other' needs a note saying what it was" in body
    assert "/done 1\n    refused: lead 1 had 0 open tasks when the email was sent; there is no task 1" in body
    assert "/frobnicate\n    refused: unknown command /frobnicate; /help lists them" in body
    assert smtp.messages[-1]["Subject"].endswith(": 2 done, 3 refused")
    code, out, _ = replying.cli("replies", "list")
    assert "ana@example.com  lead #1  reply: 2 applied, 3 refused" in out
    assert "    /disqualify Other  → refused: lead 1: the reason 'Other' needs a note" in out


@pytest.mark.parametrize("forge, reason", [
    (lambda email: reply(email, "/disqualify Bad timing", sender="Ben <ben@example.com>"),
     "the token was not issued to ben@example.com"),
    (lambda email: reply(email, "/disqualify Bad timing", sender="Mallory <mallory@evil.test>"), None),
    (lambda email: reply({"Message-ID": email["Message-ID"].replace(".L1.", ".L2."), "Subject": email["Subject"]},
                         "/disqualify Bad timing"), "the token was not issued to ana@example.com"),
    (lambda email: reply(email, "/disqualify Bad timing", headers={"Auto-Submitted": "auto-replied"}),
     "auto-reply"),
    (lambda email: reply(email, "/disqualify Bad timing", sender="Ana <ana@example.com>, Ben <ben@example.com>"),
     "its From names several"),
])
def test_a_forged_or_tampered_reply_changes_nothing_and_gets_no_mail(replying, smtp, mailbox, forge, reason):
    (new_lead,) = smtp.messages
    mailbox.append(forge(new_lead))

    replying.cli("poll")

    assert lead(replying, 1).status == "New"
    assert [m["X-Leadtap"] for m in smtp.messages[1:]] in ([], ["notification"])  # no confirmation, ever
    assert {m["To"] for m in smtp.messages} <= {"ana@example.com", "ben@example.com", "cy@example.com"}
    assert replies(replying) == []
    entry = replying.ledger()[-1]
    if reason:  # from an owner's address: recorded, with the reason
        assert entry.outcome == "not_lead" and reason in entry.reason
    else:  # a stranger's mail is ordinary mail: a lead like any other, never read for commands
        assert entry.outcome == "lead" and lead(replying, 2).email == "mallory@evil.test"


def test_a_reassignment_revokes_the_old_owners_replies(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    assert replying.cli("leads", "assign", "1", "ben@example.com")[0] == 0
    mailbox.append(reply(new_lead, "/status Contacted"))

    replying.cli("poll")

    assert lead(replying, 1).status == "New"
    assert replying.ledger()[-1].reason == "reply refused: lead 1 is not yours (it is ben@example.com's)"
    code, out, _ = replying.cli("replies", "list", "--format", "json")
    assert [(r["sender"], r["outcome"], r["results"]) for r in json.loads(out)] == [
        ("ana@example.com", "reply refused: lead 1 is not yours (it is ben@example.com's)", [])]
    assert [m["To"] for m in smtp.messages] == ["ana@example.com", "ben@example.com"]  # ben's new-lead email only


def configured(env: Env, mailbox, smtp, tmp_path, extra: str = "") -> object:
    """Commands on with ``extra`` in [commands]; one lead made, its new-lead email returned."""
    (tmp_path / "commands.secret").write_text(SECRET)
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra=commands_config(smtp.port, tmp_path / "commands.secret", extra))
    env.upgrade()
    env.cli("poll")
    return smtp.messages[0]


def test_with_an_authserv_id_only_a_reply_its_server_passed_runs(env, mailbox, smtp, tmp_path):
    new_lead = configured(env, mailbox, smtp, tmp_path, 'authserv_id = "mx.example.com"')
    passing = "mx.example.com; spf=pass; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"
    failing = "mx.example.com; spf=fail; dkim=none; dmarc=fail header.from=example.com"
    mailbox.append(reply(new_lead, "/note unchecked"))
    mailbox.append(reply(new_lead, "/note spoofed", headers={"Authentication-Results": failing}))
    mailbox.append(reply(new_lead, "/note passed", headers={"Authentication-Results": passing}))

    env.cli("poll")

    assert [e.reason for e in env.ledger()[-3:]] == [
        "reply refused: no Authentication-Results from mx.example.com",
        "reply refused: mx.example.com did not pass DMARC or DKIM for example.com (dmarc=fail)",
        "reply: 1 applied, 0 refused"]
    assert [a["summary"] for a in shown(env, 1)["activities"] if a["kind"] == "note"] == ["passed"]


def test_a_reply_to_an_email_older_than_token_max_age_is_refused(env, mailbox, smtp, tmp_path):
    new_lead = configured(env, mailbox, smtp, tmp_path, 'token_max_age = "1h"')
    mailbox.append(reply(new_lead, "/status Contacted"))
    configure_logging()
    app = build_app(str(env.path))
    try:
        later = datetime.now(timezone.utc) + timedelta(hours=2)
        app.ready_database()
        app.mailbox_ingest("sales", clock=lambda: later).run()
    finally:
        app.close()

    assert env.ledger()[-1].reason.startswith("reply refused: the token expired: issued ")
    assert lead(env, 1).status == "New" and len(smtp.messages) == 1


def test_a_reply_in_two_mailboxes_and_under_two_workers_runs_once(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    answer = reply(new_lead, "/status Contacted\n/note Called, call back Friday")
    mailbox.append(answer)
    mailbox.append(answer, folder="Replies")
    replying.configure(mailbox.section(), mailbox.section(name="replies", folder="Replies"),
                       extra=replying.extra)

    results = run_at_once(start_poll(replying.path), start_poll(replying.path))

    assert all(code in (0, 1) for code, _, _ in results), results
    assert lead(replying, 1).status == "Contacted"
    assert len(replies(replying)) == 1
    notes = [a for a in shown(replying, 1)["activities"] if a["kind"] == "note"]
    assert len(notes) == 1
    assert len([m for m in smtp.messages if m["X-Leadtap"] == "confirmation"]) == 1
    reasons = sorted(e.reason for e in replying.ledger() if e.reason and e.reason.startswith("reply"))
    assert reasons == ["reply: 2 applied, 0 refused", "reply: already handled"]


def test_a_digest_reply_names_each_lead(env, mailbox, smtp, tmp_path):
    (tmp_path / "commands.secret").write_text(SECRET)  # three leads, one per owner, and a digest each
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    mailbox.append(enquiry(name="Kim Lee", email="kim@client.test"))
    mailbox.append(enquiry(name="Al Jones", email="al@client.test"))
    config = commands_config(smtp.port, tmp_path / "commands.secret").replace("[reminders]\n", "[reminders]\ndigest = true\n")
    env.configure(mailbox.section(), extra=config)
    env.upgrade()
    env.cli("poll")  # jo → ana, kim → ben, al → cy
    sweep(env, datetime.now(timezone.utc) + timedelta(days=2))
    digest = [m for m in smtp.messages if m["To"] == "ana@example.com" and m["X-Leadtap"] == "reminder"][0]
    assert digest["Message-ID"].startswith("<lt1.D0.")
    mailbox.append(reply(digest, "/status 1 Contacted\n/status 2 Contacted\n/status Contacted"))

    env.cli("poll")

    assert (lead(env, 1).status, lead(env, 2).status) == ("Contacted", "New")
    body = smtp.messages[-1].get_body(("plain",)).get_content()
    assert "Lead #1 Jo Smith" in body and "Kim Lee" not in body  # another owner's lead is not shown
    assert "/status 2 Contacted\n    refused: lead 2 was not in the digest this answers" in body
    assert "ben@example.com" not in body  # nothing of a lead the sender may not see
    assert "/status Contacted\n    refused: in a digest, name the lead first" in body

    confirmation = smtp.messages[-1]  # a digest's: it goes on with the leads the reply named
    mailbox.append(reply(confirmation, "/note 1 from the confirmation\n/note 2 not named"))
    env.cli("poll")
    assert env.ledger()[-1].reason == "reply: 1 applied, 1 refused"
    assert "from the confirmation" in [a["summary"] for a in shown(env, 1)["activities"]]

    env.execute(delete(DigestToken))  # a digest sent before leadtap recorded its leads (or long ago)
    mailbox.append(reply(digest, "/status 1 Attempting"))
    env.cli("poll")
    assert env.ledger()[-1].reason == ("reply refused: the digest it answers is not on record "
                                       "(older than digest_token_max_age?)")
    assert lead(env, 1).status == "Contacted"


def test_check_reads_the_secret_renders_the_confirmation_and_warns_of_an_unwatched_address(replying, tmp_path):
    code, out, _ = replying.cli("check")
    assert "ok    template command_confirmation: renders (text and HTML)" in out
    assert ("ok    commands: secret read; WARNING: Reply-To crm@example.com is not the username of a watched "
            "mailbox") in out
    assert "WARNING: no authserv_id: a reply's From is taken as written" in out

    (tmp_path / "commands.secret").write_text("short")
    code, out, _ = replying.cli("check")
    assert code == 1 and "FAIL  commands:" in out and "5 bytes; at least 32" in out


def test_a_task_reminder_says_the_tasks_number_and_done_n_closes_that_task(env, mailbox, smtp, tmp_path):
    new_lead = configured(env, mailbox, smtp, tmp_path, "")
    config = env.path.read_text().replace('status = "New"\nafter = "1d"\n', 'kind = "task"\nafter = "1h"\n')
    env.path.write_text(config.replace('name = "untouched"', 'name = "task-overdue"'))
    assert env.cli("tasks", "add", "1", "Call Jo", "--due", "1d")[0] == 0
    assert env.cli("tasks", "add", "1", "Send the quote", "--due", "2d")[0] == 0
    sweep(env, datetime.now(timezone.utc) + timedelta(days=3))
    quote = [m for m in smtp.messages
             if m["X-Leadtap"] == "reminder" and "Send the quote" in m.get_body(("plain",)).get_content()][0]
    assert "Reply /done 2" in quote.get_body(("plain",)).get_content()
    mailbox.append(reply(quote, "/done 2"))

    env.cli("poll")

    code, out, _ = env.cli("tasks", "list", "--lead", "1", "--format", "json")
    assert [t["title"] for t in json.loads(out)] == ["Call Jo"]
    confirmation = smtp.messages[-1]
    assert confirmation["To"] == new_lead["To"] == "ana@example.com"
    assert "/done 2\n    done: task done: Send the quote" in confirmation.get_body(("plain",)).get_content()


def test_an_owners_mail_to_the_contact_with_leadtap_in_cc_is_outreach_not_commands(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    answer = reply(new_lead, "/status Contacted\nHello Jo, thanks for your enquiry.")
    mailbox.append(answer.replace(b"To: crm@example.com", b"To: jo@client.test\r\nCc: crm@example.com"))

    code, out, _ = replying.cli("poll")

    assert "1 added to a lead" in out and lead(replying, 1).status == "New"
    assert replies(replying) == [] and len(smtp.messages) == 1
    assert replying.ledger()[-1].reason == "outreach"


def test_commands_in_a_forwarded_message_are_not_read(replying, smtp, mailbox):
    from email.message import EmailMessage

    (new_lead,) = smtp.messages
    forwarded = EmailMessage()
    forwarded["From"], forwarded["Subject"] = "someone@else.test", "fwd"
    forwarded.set_content("/won amount=1 close_date=2026-12-01\n")
    outer = EmailMessage()
    for name, value in (("From", "Ana <ana@example.com>"), ("To", "crm@example.com"), ("Subject", "Re: x"),
                        ("In-Reply-To", new_lead["Message-ID"]), ("References", new_lead["Message-ID"])):
        outer[name] = value
    outer.set_content("<p>see below</p>", subtype="html")
    outer.add_attachment(forwarded)
    mailbox.append(bytes(outer))

    replying.cli("poll")

    assert lead(replying, 1).status == "New"
    (recorded,) = replies(replying)
    assert [r["line"] for r in recorded.results] == ["(note)"]  # "see below" only


def test_an_assign_in_a_reply_ends_the_senders_right_to_the_rest(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "/assign ben@example.com\n/status Contacted"))

    replying.cli("poll")

    assert lead(replying, 1).status == "New"
    (recorded,) = replies(replying)
    assert [(r["applied"], r["words"]) for r in recorded.results] == [
        (True, "owner ana@example.com → ben@example.com"),
        (False, "lead 1 is not yours")]


def test_done_n_means_the_task_the_email_listed_even_after_another_was_closed(env, mailbox, smtp, tmp_path):
    new_lead = configured(env, mailbox, smtp, tmp_path, "")
    env.cli("tasks", "add", "1", "Call Jo", "--due", "1d")
    env.cli("tasks", "add", "1", "Send the quote", "--due", "2d")
    assert env.cli("leads", "assign", "1", "ben@example.com")[0] == 0  # ben's new-lead email lists both tasks
    listing = smtp.messages[-1]
    assert listing["To"] == "ben@example.com" and "1. Call Jo" in listing.get_body(("plain",)).get_content()
    env.cli("tasks", "done", "1")  # "Call Jo" closed by hand after the email
    mailbox.append(reply(listing, "/done 2", sender="Ben <ben@example.com>"))

    env.cli("poll")

    code, out, _ = env.cli("tasks", "list", "--lead", "1", "--format", "json")
    assert json.loads(out) == []
    assert "done: task done: Send the quote" in smtp.messages[-1].get_body(("plain",)).get_content()
    assert new_lead["Message-ID"] != listing["Message-ID"]


def test_a_contacts_mail_naming_a_leadtap_email_is_their_mail_never_commands(replying, smtp, mailbox):
    (new_lead,) = smtp.messages  # forwarded by the owner to the contact, who answers it
    mailbox.append(reply(new_lead, "/status Qualified\nYes, please call me.", sender="Jo Smith <jo@client.test>"))

    code, out, _ = replying.cli("poll")

    assert "1 added to a lead" in out
    assert lead(replying, 1).status == "New" and replies(replying) == []
    assert [m["X-Leadtap"] for m in smtp.messages] == ["notification"]
    assert replying.ledger()[-1].reason == "repeat sender"


# --- the outside attack's holes (issue 14), through Dovecot and aiosmtpd ---------------------


def on_top(raw: bytes, *fields: str) -> bytes:
    """The message with ``fields`` added above its header, as a relay (or a replayer) adds them."""
    return "".join(field + "\r\n" for field in fields).encode("ascii") + raw


def test_a_senders_own_results_below_the_servers_received_do_not_pass(env, mailbox, smtp, tmp_path):
    new_lead = configured(env, mailbox, smtp, tmp_path, 'authserv_id = "mx.example.com"')
    mailbox.append(on_top(reply(new_lead, "/disqualify Other: pwned"),
                          "Authentication-Results: mx.example.com; dkim=none; dmarc=fail header.from=example.com",
                          "Received: from mail.evil.test by mx.example.com; Tue, 24 Nov 2026 10:00:00 +0000",
                          "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com"))
    mailbox.append(on_top(reply(new_lead, "/disqualify Other: pwned again"),  # a pass injected into a comment
                          r"Authentication-Results: mx.example.com; spf=pass (helo=x\); dmarc=pass "
                          r"header.from=example.com; \() smtp.helo=x; dmarc=fail header.from=example.com"))

    env.cli("poll")

    assert [e.reason for e in env.ledger()[-2:]] == [
        "reply refused: mx.example.com did not pass DMARC or DKIM for example.com (dmarc=fail)"] * 2
    assert lead(env, 1).status == "New" and len(smtp.messages) == 1  # no confirmation to a forged sender


def test_a_genuine_reply_replayed_with_a_field_added_does_not_run_again(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    genuine = reply(new_lead, "/note Called Jo, ačiū")
    mailbox.append(genuine)
    replying.cli("poll")
    assert replying.ledger()[-1].reason == "reply: 1 applied, 0 refused" and len(smtp.messages) == 2

    mailbox.append(on_top(genuine, "Message-ID: <replayed-1@evil.test>"))  # DKIM verifies the bottom one
    mailbox.append(on_top(genuine, "Subject: Re: again"))
    mailbox.append(genuine.replace(b"Message-ID: <", b"Message-ID: <x"))  # an unsigned Message-ID, changed
    # What a relaxed signature does not see, or a signer leaves unsigned: the
    # Date's spaces, the charset (Gmail's h=), the transfer encoding (Microsoft's).
    mailbox.append(re.sub(rb"(\nDate: [A-Z][a-z]{2},) ", rb"\1   ", genuine, count=1)
                   .replace(b'charset="utf-8"', b"charset=iso-8859-1"))
    mailbox.append(genuine.replace(b"Content-Transfer-Encoding: 8bit", b"Content-Transfer-Encoding: quoted-printable"))
    replying.cli("poll")

    assert [e.reason for e in replying.ledger()[-5:]] == [
        "reply refused: it has more than one message-id field; a message has one",
        "reply refused: it has more than one subject field; a message has one",
        "reply: already handled", "reply: already handled", "reply: already handled"]
    notes = [a["summary"] for a in shown(replying, 1)["activities"] if a["kind"] == "note"]
    assert notes == ["Called Jo, ačiū"] and len(smtp.messages) == 2  # one note, one confirmation


def test_a_second_from_past_the_header_cut_is_still_counted():
    from leadtap.ingest.parse import parse_message

    from leadtap.core.rules import tokens

    answered = tokens.message_id(SECRET.encode(), "ana@example.com", datetime.now(timezone.utc), "example.com", 1)
    filler = "".join(f"X-Filler-{i}: {'x' * 900}\r\n" for i in range(300))  # 270 KiB
    raw = plain_message("/note x", sender="Ana <ana@example.com>", headers={"In-Reply-To": answered}).replace(
        b"\n\n", ("\n" + filler + "From: Mallory <mallory@evil.test>\n\n").encode(), 1)
    assert parse_message(raw).repeated == ("from",)
    plain = plain_message("Hello", sender="Jo <jo@x.test>").replace(b"\n\n", b"\nFrom: Al <al@x.test>\n\n", 1)
    assert parse_message(plain).repeated == ()  # only a reply to leadtap's email is checked for it


def test_an_out_of_office_without_headers_ends_the_loop_at_once(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "/status Contacted"))
    replying.cli("poll")
    confirmation = smtp.messages[-1]
    assert confirmation["X-Leadtap"] == "confirmation" and confirmation["Message-ID"].startswith("<lt1.L1.")

    mailbox.append(reply(confirmation, "I am out of the office until Monday, with limited access to email."))
    mailbox.append(reply(confirmation, "/snooze 2d", headers={"X-Auto-Response-Suppress": "DR, RN, NRN, OOF"}))
    mailbox.append(plain_message("Away until Monday.", sender="Ana <ana@example.com>", to="crm@example.com",
                                 subject="Automatic reply: " + confirmation["Subject"],
                                 headers={"In-Reply-To": confirmation["Message-ID"]}))
    replying.cli("poll")

    assert [e.reason for e in replying.ledger()[-3:]] == [
        "reply: 1 applied, 0 refused; no command, no confirmation",  # its text is a note, nobody is answered
        "reply: 1 applied, 0 refused; no confirmation (X-Auto-Response-Suppress: its sender asks for no automatic "
        "answer)",  # Exchange sets it on people's mail too: the command runs
        "auto-reply (subject: Automatic reply)"]
    assert len(smtp.messages) == 2 and lead(replying, 1).status == "Contacted"


def test_confirmations_to_one_sender_pause_past_the_hourly_limit(env, mailbox, smtp, tmp_path):
    new_lead = configured(env, mailbox, smtp, tmp_path, "confirmations_per_hour = 3")
    for n in range(5):
        mailbox.append(reply(new_lead, f"/note call {n}"))

    env.cli("poll")

    reasons = [e.reason for e in env.ledger()[-5:]]
    assert reasons[:3] == ["reply: 1 applied, 0 refused"] * 3
    assert reasons[3:] == ["reply: 1 applied, 0 refused; confirmations paused: 3 to ana@example.com in the last hour"] * 2
    assert len(smtp.messages) == 1 + 3  # the new-lead email and three confirmations
    assert len([a for a in shown(env, 1)["activities"] if a["kind"] == "note"]) == 5  # every command still ran


def test_a_reply_of_ten_thousand_lines_runs_twenty_and_its_confirmation_stays_small(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "\n".join(f"/note {n}" for n in range(10_000)) + "\n/note " + "z" * 100_000))

    replying.cli("poll")

    (recorded,) = replies(replying)
    assert len(recorded.results) == 21
    assert recorded.results[-1] == {"line": "(9981 more command lines)", "applied": False,
                                    "words": "not run: more than 20 commands in one reply", "lead_id": None}
    assert len(smtp.messages[-1].as_bytes()) < 20_000


def test_a_reply_that_failed_once_runs_when_retried(replying, smtp, mailbox):
    from tests.test_ingest import allow_rows, refuse_rows

    (new_lead,) = smtp.messages
    refuse_rows(replying, "command_replies")  # the reply's write fails: recorded as failed
    mailbox.append(reply(new_lead, "/status Contacted"))
    assert replying.cli("poll")[0] == 1
    assert replying.ledger()[-1].outcome == "failed" and lead(replying, 1).status == "New"
    allow_rows(replying, "command_replies")

    code, out, err = replying.cli("failed", "retry", "--all")

    assert code == 0, out + err
    assert replying.ledger()[-1].reason == "reply: 1 applied, 0 refused" and lead(replying, 1).status == "Contacted"
    assert "notifications: 1 sent" in out and smtp.messages[-1]["X-Leadtap"] == "confirmation"


def test_confirmations_say_re_once_help_uses_the_pipelines_names_and_contacts_are_not_listed(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "/help"))
    mailbox.append(plain_message("Thanks, any news?", sender="Jo Smith <jo@client.test>",
                                 subject="Re: enquiry", headers={"In-Reply-To": shown(replying, 1)["thread"][0]}))
    replying.cli("poll")

    confirmation = smtp.messages[-1]
    assert confirmation["Subject"] == "Re: " + new_lead["Subject"] + ": 1 done"  # not "Re: Re:"
    body = confirmation.get_body(("plain",)).get_content()
    assert "/status STATUS             move the lead (e.g. /status Attempting)" in body  # the pipeline's own
    assert "/disqualify No budget" in body and "Connected" not in body
    code, out, _ = replying.cli("replies", "list", "--format", "json")
    assert [r["sender"] for r in json.loads(out)] == ["ana@example.com"]  # Jo's answer is her mail, not a reply
    assert [(e.sender, e.reason) for e in replying.ledger()][-1] == ("jo@client.test", "reply")


def test_calls_meetings_fields_and_the_source_are_set_by_reply(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "/call connected Spoke with Jo, quote by Friday\n/field industry=Retail\n"
                                   "/field budget=5 000 EUR\n/source partner\n/meeting booked 2999-12-10 demo\n"
                                   "/field =x\n/call maybe"))

    code, out, err = replying.cli("poll")

    assert code == 0, out + err
    moved = shown(replying, 1)
    assert moved["source"] == "Partner" and moved["fields"] == {"industry": "Retail", "budget": "5 000 EUR"}
    logged = [(a["kind"], a["summary"], a["details"]["how"]) for a in moved["activities"]
              if a["kind"] in ("call", "meeting")]
    assert logged == [("call", "call: connected — Spoke with Jo, quote by Friday", "mail"),
                      ("meeting", "meeting: booked — demo", "mail"), ("call", "call — maybe", "mail")]
    (meeting,) = [a for a in moved["activities"] if a["kind"] == "meeting"]
    assert meeting["details"]["at"].startswith("2999-12-10T00:00")  # the day's start in [reminders] timezone
    body = smtp.messages[-1].get_body(("plain",)).get_content()
    assert "/source partner\n    done: source Email → Partner" in body
    assert "/field =x\n    refused: /field needs NAME=VALUE, e.g. /field industry=Retail" in body
    assert smtp.messages[-1]["Subject"].endswith(": 6 done, 1 refused")


def test_an_owner_says_they_are_away_and_back_by_reply(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "/away until 2999-12-20"))

    replying.cli("poll")

    code, out, _ = replying.cli("owners", "list", "--format", "json")
    ana = {row["email"]: row for row in json.loads(out)}["ana@example.com"]
    assert ana["away"] is True and ana["away_until"].startswith("2999-12-20")
    body = smtp.messages[-1].get_body(("plain",)).get_content()
    assert "/away until 2999-12-20\n    done: ana@example.com is away until 2999-12-20 00:00 UTC" in body
    mailbox.append(enquiry(name="Al Jones", email="al@client.test"))
    replying.cli("poll")
    assert lead(replying, 2).owner_id != lead(replying, 1).owner_id  # the rotation passed ana by

    confirmation = smtp.messages[-1] if smtp.messages[-1]["X-Leadtap"] == "confirmation" else smtp.messages[-2]
    mailbox.append(reply(confirmation, "/back\n/back"))
    replying.cli("poll")
    body = smtp.messages[-1].get_body(("plain",)).get_content()
    assert "/back\n    done: ana@example.com is back: in the rotation again" in body
    assert "/back\n    refused: ana@example.com is not away" in body
