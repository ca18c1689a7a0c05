"""Commands by reply, the pure parts: the token in a Message-ID, the
grammar of a reply, and every rule of who may act — no server, no clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from leadtap.core.rules import tokens
from leadtap.core.rules.reply_grammar import MAX_NOTE, Command, moment, name_and_fields, new_text, parse_reply, reason_and_note
from leadtap.core.rules.reply_rules import NotAuthorised, Person, ReplyPolicy, authorise, check_authentication, may_act
from leadtap.core.rules.tokens import DIGEST, LEAD, InvalidToken

SECRET = b"k" * 32
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
ANA = "ana@example.com"
POLICY = ReplyPolicy(SECRET, 30 * DAY, admins=frozenset({"sue@example.com"}))


def mid(recipient: str = ANA, lead_id: int | None = 42, issued: datetime = NOW - DAY, secret: bytes = SECRET) -> str:
    return tokens.message_id(secret, recipient, issued, "example.com", lead_id)


# --- the token ---------------------------------------------------------------------


def test_a_token_names_its_lead_and_when_and_answers_only_for_its_recipient():
    message_id = mid()
    assert tokens.TOKEN_RE.fullmatch(message_id) and ANA not in message_id
    token = tokens.verify(SECRET, [message_id], "Ana@Example.com", NOW, 30 * DAY)
    assert (token.kind, token.lead_id, token.recipient) == (LEAD, 42, ANA)
    assert token.issued_at == NOW - DAY  # to the millisecond
    digest = tokens.verify(SECRET, [mid(lead_id=None)], ANA, NOW, 30 * DAY)
    assert (digest.kind, digest.lead_id) == (DIGEST, None)


def tampered(message_id: str, part: int, value: str) -> str:
    body, domain = message_id[1:-1].split("@")
    parts = body.split(".")
    parts[part] = value
    return "<" + ".".join(parts) + "@" + domain + ">"


@pytest.mark.parametrize("thread_ids, sender, words", [
    ([mid()], "mallory@evil.test", "not issued to mallory@evil.test"),  # a forged or another From
    ([mid(recipient="ben@example.com")], ANA, "not issued to ana@example.com"),  # someone else's email
    ([tampered(mid(), 1, "L43")], ANA, "not issued"),  # the token moved to another lead
    ([tampered(mid(), 2, tokens.to_base36(int(NOW.timestamp() * 1000)))], ANA, "not issued"),  # made younger
    ([tampered(mid(), 3, "aaaaaaaa")], ANA, "not issued"),  # another nonce
    ([mid(secret=b"x" * 32)], ANA, "not issued"),  # made with another secret
    ([mid(issued=NOW - 31 * DAY)], ANA, "the token expired"),
    (["<abc@example.com>"], ANA, "no leadtap token"),
])
def test_a_token_that_does_not_fit_is_refused_with_the_reason(thread_ids, sender, words):
    with pytest.raises(InvalidToken, match=words):
        tokens.verify(SECRET, thread_ids, sender, NOW, 30 * DAY)


def test_two_emails_in_one_second_never_share_a_message_id():
    assert mid() != mid()
    assert tokens.verify(SECRET, [mid()], ANA, NOW, 30 * DAY).lead_id == 42


def test_the_valid_token_among_the_references_counts():
    found = tokens.verify(SECRET, ["<other@x.test>", mid(recipient="ben@example.com"), mid(lead_id=7)], ANA, NOW,
                          30 * DAY)
    assert found.lead_id == 7


# --- the grammar ---------------------------------------------------------------------


REPLY = """/status Connected
/snooze 3d
/disqualify Other: moved the project to 2027

Called them, call back Friday.
/note this is part of the note, not a command

-- 
Ana, Sales
On Tue, 24 Nov 2026 at 10:00, leadtap <crm@example.com> wrote:
> Lead #42 is yours now.
> /status Qualified
"""


def test_commands_are_the_lines_at_the_top_and_the_rest_above_the_quote_is_a_note():
    parsed = parse_reply(REPLY)
    assert [(c.name, c.args) for c in parsed.commands] == [
        ("status", "Connected"), ("snooze", "3d"), ("disqualify", "Other: moved the project to 2027")]
    assert parsed.note == "Called them, call back Friday.\n/note this is part of the note, not a command"
    assert parsed.errors == ()


@pytest.mark.parametrize("quote", [
    "> /status Qualified",
    "On Tue, 24 Nov 2026, leadtap <crm@example.com>\nwrote:\n/status Qualified",
    "Am 24.11.2026 schrieb leadtap <crm@example.com>:\n/status Qualified",
    "-----Original Message-----\n/status Qualified",
    "________________________________\nFrom: leadtap <crm@example.com>\n/status Qualified",
    "From: leadtap <crm@example.com>\nSent: Tuesday\n/status Qualified",
])
def test_nothing_is_read_from_the_quoted_email(quote):
    parsed = parse_reply(f"/note first\n\n{quote}\n")
    assert [c.name for c in parsed.commands] == ["note"] and parsed.note is None


def test_a_reply_that_starts_with_the_quote_has_no_command():
    assert parse_reply("> /status Qualified\n").commands == ()
    assert new_text("Fine.\r\n> quoted\r\n") == "Fine."


def test_unknown_or_incomplete_commands_are_said_back_not_run():
    parsed = parse_reply("/stauts Connected\n/status\n/done two\n/ status x\n/help\n")
    assert [c.name for c in parsed.commands] == ["help"]
    assert [why for _, why in parsed.errors] == [
        "unknown command /stauts; /help lists them", "/status needs a status", "/done needs a task's number, not 'two'",
        "a command is / and a word, e.g. /status Connected; /help lists them"]


def test_a_digest_names_the_lead_first():
    parsed = parse_reply("/status 12 Connected\n/done #12 2\n/help\n/note Hi\n", digest=True)
    assert [(c.name, c.lead_id, c.args) for c in parsed.commands] == [
        ("status", 12, "Connected"), ("done", 12, "2"), ("help", None, "")]
    assert parsed.errors == (("/note Hi", "in a digest, name the lead first: /note 12 ..."),)


def test_at_most_twenty_commands_run_and_the_rest_is_one_line():
    parsed = parse_reply("\n".join(f"/note {i}" for i in range(10_000)))
    assert len(parsed.commands) == 20
    assert parsed.errors == () and parsed.not_run == (
        "(9980 more command lines)", "not run: more than 20 commands in one reply")


def test_a_notes_and_a_reasons_text_are_clipped_like_free_text():
    (note,) = parse_reply("/note " + "n" * 5_000_000).commands
    (disqualify,) = parse_reply("/disqualify Other: " + "r" * 100_000).commands
    assert len(note.args) == MAX_NOTE and len(reason_and_note(disqualify.args)[1]) < MAX_NOTE
    assert len(parse_reply("x" * 6_000_000).note) == MAX_NOTE


def test_an_expiry_under_a_day_is_said_in_hours_not_zero_days():
    with pytest.raises(InvalidToken, match=r"valid for 1 hour$"):
        tokens.verify(SECRET, [mid(issued=NOW - 2 * timedelta(hours=1))], ANA, NOW, timedelta(hours=1))
    assert tokens.describe_span(timedelta(days=1, hours=6)) == "1 day 6 hours"
    assert tokens.describe_span(timedelta(minutes=45)) == "45 minutes"


def test_a_digests_token_has_its_own_shorter_age():
    digest, lead = mid(lead_id=None, issued=NOW - 8 * DAY), mid(issued=NOW - 8 * DAY)
    assert tokens.verify(SECRET, [lead], ANA, NOW, 30 * DAY, 7 * DAY).lead_id == 42
    with pytest.raises(InvalidToken, match="valid for 7 days"):
        tokens.verify(SECRET, [digest], ANA, NOW, 30 * DAY, 7 * DAY)
    assert tokens.verify(SECRET, [digest], ANA, NOW + timedelta(0), 30 * DAY, 9 * DAY).mac == tokens.mac_of(digest)


def test_arguments_read_as_the_rules_need_them():
    assert reason_and_note("Other: moved the project to 2027") == ("Other", "moved the project to 2027")
    assert reason_and_note("Bad timing") == ("Bad timing", None)
    assert name_and_fields("Offer submitted amount=12000 close_date=2026-12-01") == (
        "Offer submitted", {"amount": "12000", "close_date": "2026-12-01"})
    assert moment("3d", NOW, timezone.utc) == NOW + 3 * DAY
    assert moment("2026-12-01", NOW, timezone.utc) == datetime(2026, 12, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="or a date such as"):
        moment("soon", NOW, timezone.utc)
    assert Command("note", "x", "/note x").lead_id is None


# --- who may act -----------------------------------------------------------------------


def test_an_owner_answering_their_own_email_may_act():
    token = authorise(POLICY, [mid()], ANA, Person(ANA, True), (), NOW)
    assert token.lead_id == 42


@pytest.mark.parametrize("sender, person, thread_ids, words", [
    ("mallory@evil.test", None, [mid()], "is not an owner"),
    ("ben@example.com", Person("ben@example.com", True), [mid()], "not issued to ben@example.com"),
    (ANA, Person(ANA, False), [mid()], "no longer an active owner"),
    ("sue@example.com", Person("sue@example.com", False), [mid(recipient="sue@example.com")], "no longer an active"),
    (ANA, Person(ANA, True), [mid(issued=NOW - 40 * DAY)], "expired"),
])
def test_a_reply_that_may_not_act_is_refused_with_the_reason(sender, person, thread_ids, words):
    """An inactive admin too: being an admin is no reason to act once one has left."""
    with pytest.raises(NotAuthorised, match=words):
        authorise(POLICY, thread_ids, sender, person, (), NOW)


def test_only_the_current_owner_or_an_admin_may_act_on_a_lead():
    assert may_act(ANA, POLICY.admins, 42, ANA, True) is None
    assert may_act(ANA, POLICY.admins, 42, "ben@example.com", True) == "lead 42 is not yours"  # mailed back
    assert may_act(ANA, POLICY.admins, 42, "ben@example.com", True, tell_owner=True) == (
        "lead 42 is not yours (it is ben@example.com's)")  # the ledger's
    assert may_act(ANA, POLICY.admins, 42, None, False, tell_owner=True) == "lead 42 is not yours (it has no owner)"
    assert may_act("sue@example.com", POLICY.admins, 42, "ben@example.com", True) is None


RESULTS = "mx.example.com; spf=pass smtp.mailfrom=example.com; dkim={dkim} header.d={d}; dmarc={dmarc} header.from={f}"


@pytest.mark.parametrize("headers, passes", [
    ([RESULTS.format(dkim="pass", d="example.com", dmarc="pass", f="example.com")], True),
    ([RESULTS.format(dkim="fail", d="example.com", dmarc="pass", f="example.com")], False),  # a conflict
    ([RESULTS.format(dkim="pass", d="example.com", dmarc="fail", f="example.com")], False),  # DMARC decides
    ([RESULTS.format(dkim="pass", d="evil.test", dmarc="fail", f="example.com")], False),  # signed by another domain
    ([RESULTS.format(dkim="fail", d="example.com", dmarc="fail", f="example.com")], False),
    (["mx.evil.test; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"], False),  # not our server
    ([RESULTS.format(dkim="fail", d="example.com", dmarc="fail", f="example.com"),
      "mx.upstream.test; dkim=pass header.d=example.com",
      RESULTS.format(dkim="pass", d="example.com", dmarc="pass", f="example.com")], False),  # a forged one below
    (["mx.example.com; spf=pass smtp.mailfrom=example.com",
      RESULTS.format(dkim="pass", d="example.com", dmarc="pass", f="example.com")], True),  # one header per milter
    (["mx.example.com; dkim=pass header.d=example.com; dmarc=none header.from=example.com"], True),  # no policy
    (["mx.example.com; dkim=pass header.i=@example.com header.s=g; spf=pass smtp.mailfrom=ana@example.com"], True),
    (["mx.example.com; dmarc=pass action=none header.from=example.com"], True),  # Exchange's extra key
    (["mx.example.com; dkim=pass header.d=example.com; dkim=neutral header.d=example.com"], False),
    (["mx.example.com; dkim=pass header.d=example.com; dmarc=temperror header.from=example.com"], False),
    (["mx.example.com; spf=pass smtp.mailfrom=dmarc=pass@evil.test; dmarc=fail header.from=example.com"], False),
    (["mx.example.com; dkim=fail (dkim=pass header.d=example.com) header.d=example.com"], False),  # a comment
    (["mx.example.com; dmarc=pass"], False),  # for which domain?
    (["mx.example.com; dkim=pass header.d=mail.example.com"], False),  # a subdomain signs for itself, not for us
    (["mx.example.com; dkim=pass header.i=@example.com header.d=example.com (x; y)"], True),
    (["mx.example.com; dkim=pass header.d=example.com", "mx.example.com; dkim=fail header.d=example.com"], False),
    (['mx.example.com; dmarc=pass header.from="example.com"'], True),  # a quoted value
    (["mx.example.com 1; dmarc/1=pass reason=\"aligned\" header.from=example.com"], True),
    (["mx.example.com; none"], False),
    ([], False),
])
def test_with_an_authserv_id_the_receiving_servers_results_must_pass(headers, passes):
    if passes:
        check_authentication("mx.example.com", list(enumerate(headers)), ANA)
    else:
        with pytest.raises(NotAuthorised):
            check_authentication("mx.example.com", list(enumerate(headers)), ANA)


def test_a_senders_own_results_below_the_servers_received_are_not_read():
    """Hole 1: the run of our server's fields ends at the first other field."""
    ours = (0, "mx.example.com; dkim=none; dmarc=fail header.from=example.com")
    forged = (2, "mx.example.com; dmarc=pass header.from=example.com")  # a Received stands at position 1
    with pytest.raises(NotAuthorised, match="did not pass"):
        check_authentication("mx.example.com", [ours, forged], ANA)
    check_authentication("mx.example.com", [(3, forged[1])], ANA)  # the topmost ours, after other fields: read


def test_a_forged_pass_right_below_the_servers_own_fail_refuses():
    """OpenDKIM and OpenDMARC write their field right below Postfix's
    Received, so the sender's first field follows it in the run: any result
    for the domain that is not a pass, of whatever method, refuses."""
    for ours, forged in [("mx.example.com; dkim=fail (bad signature) header.d=example.com",
                          "mx.example.com; dmarc=pass header.from=example.com"),
                         ("mx.example.com; dmarc=fail header.from=example.com",
                          "mx.example.com; dkim=pass header.d=example.com header.i=ana@example.com")]:
        for identity in ("domain", "mailbox"):
            with pytest.raises(NotAuthorised, match="conflict"):
                check_authentication("mx.example.com", [(0, ours), (1, forged)], ANA, identity)


def test_a_field_too_long_to_read_whole_refuses():
    """Its cut end may hold the fail: forged signatures before it push it out."""
    padding = "; ".join(f"dkim=pass header.d=x{i}.test" for i in range(400))
    header = f"mx.example.com; {padding}; dmarc=pass header.from=example.com; dmarc=fail header.from=example.com"
    with pytest.raises(NotAuthorised, match="too long to read"):
        check_authentication("mx.example.com", [(0, header)], ANA)


def test_conflicting_verdicts_in_the_run_refuse_the_reply():
    """A server that does not remove fields claiming its id lets a forged one
    stand right below its own: a pass against its fail is refused."""
    run = [(0, "mx.example.com; dmarc=fail header.from=example.com"),
           (1, "mx.example.com; dmarc=pass header.from=example.com")]
    with pytest.raises(NotAuthorised, match="conflict"):
        check_authentication("mx.example.com", run, ANA)
    with pytest.raises(NotAuthorised, match="conflict"):
        check_authentication("mx.example.com", list(enumerate(text for _, text in reversed(run))), ANA)


@pytest.mark.parametrize("header", [
    r"mx.example.com; spf=pass (helo=x\); dmarc=pass header.from=example.com; \() smtp.helo=x;"
    r" dmarc=fail header.from=example.com",
    r'mx.example.com; spf=pass smtp.mailfrom="x\"; dmarc=pass header.from=example.com; x=\"@evil.test";'
    r" dmarc=fail header.from=example.com",
    r"mx.example.com; spf=pass (a ((nested) \) comment; dmarc=pass header.from=example.com) smtp.helo=x;"
    r" dmarc=fail header.from=example.com",
])
def test_quoted_pairs_in_comments_and_quoted_strings_do_not_end_them(header):
    """Hole 2: what a sender put in its HELO or envelope address, escaped as
    RFC 5322 says, stays inside the comment or the quoted string."""
    with pytest.raises(NotAuthorised, match="did not pass"):
        check_authentication("mx.example.com", [(0, header)], ANA)


@pytest.mark.parametrize("header, passes", [
    ("mx.example.com; dkim=pass header.i=ana@example.com header.d=example.com", True),
    ("mx.example.com; dkim=pass header.i=@example.com header.d=example.com", False),  # the domain's signature
    ("mx.example.com; dkim=pass header.i=ben@example.com header.d=example.com", False),  # a colleague's
    ("mx.example.com; dmarc=pass header.from=example.com", False),  # DMARC vouches for the domain only
    ("mx.example.com; dkim=pass header.i=ana@example.com; dkim=fail header.i=ana@example.com", False),
    ("mx.example.com; dmarc=fail header.from=example.com; dkim=pass header.i=ana@example.com", False),
])
def test_require_dkim_identity_mailbox_wants_a_signature_for_the_address_itself(header, passes):
    if passes:
        check_authentication("mx.example.com", [(0, header)], ANA, identity="mailbox")
    else:
        with pytest.raises(NotAuthorised):
            check_authentication("mx.example.com", [(0, header)], ANA, identity="mailbox")


# --- hostile replies -------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["/", "a", "b", ":", " ", ">", "\n", "\r", "-", "_", "#", "1", "2", "wrote", "On ",
                                  "/status ", "/help", "-- \n"]), max_size=120).map("".join))
def test_any_text_parses_and_commands_come_only_from_the_top(text):
    parsed = parse_reply(text)
    top = new_text(text).splitlines()
    for command in parsed.commands:
        assert command.line in [line.strip() for line in top]
    assert len(parsed.commands) + len(parsed.errors) <= 20 + text.count("\n") + 1


def test_a_huge_reply_is_read_in_bounded_time():
    import time

    start = time.perf_counter()
    parse_reply("/note x\n" + ("wrote " * 200_000) + ":\n" + ("On " + "a" * 100_000 + "\n") * 20)
    assert time.perf_counter() - start < 10


# --- replies as mail clients write them (literal .eml) ------------------------------------

from leadtap.ingest.parse import parse_message  # noqa: E402
from tests.helpers import ROOT  # noqa: E402

REPLIES = ROOT / "tests" / "fixtures" / "replies"


def read_reply(name: str):
    return parse_message((REPLIES / name).read_bytes())


def test_a_gmail_reply_gives_its_commands_and_note_and_its_servers_results():
    message = read_reply("gmail.eml")
    parsed = parse_reply(message.reply_text)
    assert [(c.name, c.args) for c in parsed.commands] == [("status", "Contacted"), ("snooze", "2d")]
    assert parsed.note == "Called šiandien, call back Friday."  # the quoted /status Qualified is not read
    check_authentication("mx.example.com", message.auth_results, "ana@example.com")


def test_an_outlook_html_reply_stops_at_its_header_block():
    parsed = parse_reply(read_reply("outlook.eml").reply_text)
    assert [(c.name, c.args) for c in parsed.commands] == [("disqualify", "Other: budget moved to 2027")]
    assert parsed.note == "They will call us in January – thanks."


def test_mail_that_names_no_token_has_no_reply_text():
    assert read_reply("gmail.eml").reply_text is not None
    assert parse_message((ROOT / "tests" / "fixtures" / "reply.eml").read_bytes()).reply_text is None
