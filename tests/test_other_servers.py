"""Servers other than a default Dovecot (issue 15 §6), against a Dovecot set
up as Cyrus or Courier often are — LOGIN only over TLS (LOGINDISABLED), every
folder under ``INBOX.`` with ``INBOX.Sent`` marked ``\\Sent`` (RFC 6154), no
IDLE announced — and what leadtap says of each; on SQLite and PostgreSQL."""

from __future__ import annotations

import imaplib
import uuid

import pytest
from imapclient.exceptions import LoginError

from leadtap.core.config.servers import MailboxConfig, Secret
from leadtap.core.errors import ImapError, ImapLoginError
from leadtap.dovecot import Dovecot
from leadtap.ingest.imap import translated_errors
from tests.conftest import started
from tests.helpers import Mailbox, enquiry
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def other_server():
    # 127.0.0.2: Dovecot takes a client on its own address for secure and would allow LOGIN.
    yield from started(Dovecot(host="127.0.0.2", cleartext_login=False, folders_under_inbox=True, idle=False))


@pytest.fixture
def account(other_server) -> Mailbox:
    """A fresh user of the other server."""
    return Mailbox(other_server, f"u{uuid.uuid4().hex[:12]}", other_server.password)


def encrypted(account: Mailbox, name: str = "sales", **overrides) -> str:
    return account.section(name, security="starttls", ca_file=str(account.server.ca_pem), **overrides)


def check(env: Env, *sections: str) -> tuple[int, dict[str, str]]:
    """``leadtap check``'s mailbox lines, by mailbox."""
    env.configure(*sections)
    env.upgrade()
    code, out, _ = env.cli("check")
    lines = [line for line in out.splitlines() if " mailbox " in line]
    return code, {line.split(" mailbox ")[1].split(":")[0]: line for line in lines}


# --- LOGINDISABLED --------------------------------------------------------------


def test_a_server_that_allows_no_login_without_tls_says_to_configure_it(env, account):
    code, lines = check(env, account.section("plain"), encrypted(account, "starttls"))

    assert code == 1
    assert lines["plain"].startswith("FAIL  mailbox plain: ")
    assert 'announces LOGINDISABLED): set security = "tls" (port 993) or "starttls" (port 143)' in lines["plain"]
    assert lines["starttls"].startswith("ok    mailbox starttls: logged in as")


def test_a_login_refused_for_want_of_tls_says_to_configure_it():
    """A server that answers LOGIN with RFC 5530's PRIVACYREQUIRED and announced nothing."""
    with pytest.raises(ImapLoginError, match='PRIVACYREQUIRED.*; set security = "tls"'):
        with translated_errors(box(), "logging in"):
            raise LoginError("[PRIVACYREQUIRED] Plaintext authentication disallowed")


# --- a folder by another name ---------------------------------------------------------


def test_a_folder_that_is_not_there_is_refused_with_the_folders_there_are(env, account):
    sent = encrypted(account, "sent", folder="Sent", kind="sent", templates=None)

    code, lines = check(env, sent)

    assert code == 1
    assert lines["sent"] == ("FAIL  mailbox sent: mailbox 'sent' (127.0.0.2:%d): there is no folder 'Sent'; "
                             "the sent folder (\\Sent) is 'INBOX.Sent'; the folders are 'INBOX', 'INBOX.Sent'"
                             % account.server.port)
    code, out, _ = env.cli("poll")
    assert code == 1 and "there is no folder 'Sent'; the sent folder (\\Sent) is 'INBOX.Sent'" in out


def test_the_sent_folder_the_server_marks_is_checked_quietly_and_another_with_a_warning(env, account):
    account.append(enquiry(), folder="INBOX.Outbox")

    code, lines = check(env, encrypted(account, "sent", folder="INBOX.Sent", kind="sent", templates=None),
                        encrypted(account, "outbox", folder="INBOX.Outbox", kind="sent", templates=None))

    assert code == 0
    assert "WARNING" not in lines["sent"]
    assert lines["outbox"].endswith("WARNING: the server marks 'INBOX.Sent' as its sent folder (\\Sent), "
                                    "not 'INBOX.Outbox'")


# --- IDLE ---------------------------------------------------------------------------


def test_check_says_the_server_announces_idle(env, mailbox):
    code, lines = check(env, mailbox.section("sales"), mailbox.section("quiet", idle=False))

    assert code == 0
    assert lines["sales"].endswith(", folder 'INBOX' selected, 0 unread, IDLE announced")
    assert lines["quiet"].endswith("IDLE announced, not used (idle = false): polled every 1 min")


def test_check_says_a_server_without_idle_is_polled(env, account):
    code, lines = check(env, encrypted(account, "sales", poll_interval="30s"), encrypted(account, "push", idle=True))

    assert code == 0
    assert lines["sales"].endswith(", 0 unread, the server does not announce IDLE: polled every 30 s")
    assert lines["push"].endswith("WARNING: idle = true, but the server does not announce IDLE: polled every 1 min")


# --- a lost connection ------------------------------------------------------------------


def box() -> MailboxConfig:
    return MailboxConfig(name="sales", host="imap.example.com", username="sales", password=Secret("secret"))


def test_a_dropped_connection_is_said_to_be_lost_not_refused():
    with pytest.raises(ImapError) as raised:
        with translated_errors(box(), "waiting in IDLE"):
            raise imaplib.IMAP4.abort("socket error: EOF")

    assert str(raised.value) == ("mailbox 'sales' (imap.example.com:993): connection lost while waiting in IDLE: "
                                 "socket error: EOF")


def test_a_command_the_server_answers_no_is_still_a_refusal():
    with pytest.raises(ImapError, match="server refused while searching: SEARCH command error"):
        with translated_errors(box(), "searching"):
            raise imaplib.IMAP4.error("SEARCH command error")
