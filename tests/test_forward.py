"""An owner forwards an enquiry to a watched mailbox: the forward is read as
the mail clients write it (``ingest.forward``) — Gmail's, Outlook's and Apple
Mail's inline blocks in several languages, an attached message — and, on a
real Dovecot, becomes a lead from the original sender, owned by the
forwarding owner, with the extraction templates applied to the original."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from leadtap.ingest.forward import forwarded_original
from leadtap.ingest.parse import parse_message
from tests.helpers import enquiry, plain_message
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)

FORM = "Name: Jo Smith\nEmail: jo@client.test\nPhone: +370 600 00000\nCompany: ACME\nMessage: 40 seats, please.\n"

GMAIL = f"""FYI, this one came to me directly.

---------- Forwarded message ---------
From: Jo Smith <jo@client.test>
Date: Thu, 19 Nov 2026 at 14:02
Subject: Quote for 40 seats
To: Ben <ben@example.com>


{FORM}"""

OUTLOOK = f"""Please take care of this.

________________________________
From: Jo Smith <jo@client.test>
Sent: Thursday, November 19, 2026 2:02 PM
To: Ben <ben@example.com>
Subject: Quote for 40 seats

{FORM}"""

OUTLOOK_CLASSIC = f"""
-----Original Message-----
From: Jo Smith [mailto:jo@client.test]
Sent: Thursday, November 19, 2026 2:02 PM
To: Ben
Subject: Quote for 40 seats

{FORM}"""

APPLE = f"""

Begin forwarded message:

> From: Jo Smith <jo@client.test>
> Subject: Quote for 40 seats
> Date: 19 November 2026 at 14:02:00 CET
> To: Ben <ben@example.com>
>
> {FORM.replace(chr(10), chr(10) + '> ')}"""

GERMAN = f"""
---------- Weitergeleitete Nachricht ---------
Von: Jo Smith <jo@client.test>
Datum: Do., 19. Nov. 2026 um 14:02 Uhr
Betreff: Quote for 40 seats
An: <ben@example.com>

{FORM}"""


@pytest.mark.parametrize("subject, body", [
    ("Fwd: Quote for 40 seats", GMAIL), ("FW: Quote for 40 seats", OUTLOOK),
    ("FW: Quote for 40 seats", OUTLOOK_CLASSIC), ("Fwd: Quote for 40 seats", APPLE),
    ("WG: Quote for 40 seats", GERMAN),
])
def test_an_inline_forward_is_read_as_its_original(subject, body):
    raw = plain_message(body, sender="Ben <ben@example.com>", subject=subject)

    original = forwarded_original(raw, parse_message(raw))

    assert (original.sender.name, original.sender.email) == ("Jo Smith", "jo@client.test")
    assert original.subject == "Quote for 40 seats"
    assert "Company: ACME" in original.text and "Phone: +370 600 00000" in original.text
    assert "FYI" not in original.text and "take care" not in original.text


def test_an_outlook_reply_quotes_under_the_same_rule_but_is_no_forward():
    raw = plain_message(OUTLOOK, sender="Ben <ben@example.com>", subject="RE: Quote for 40 seats")

    assert forwarded_original(raw, parse_message(raw)) is None


def test_a_forward_whose_sender_cannot_be_read_is_no_forward():
    raw = plain_message(GMAIL.replace("From: Jo Smith <jo@client.test>", "From: Jo Smith"),
                        sender="Ben <ben@example.com>", subject="Fwd: Quote")

    assert forwarded_original(raw, parse_message(raw)) is None


def attached_forward(inner: bytes, sender: str = "Ben <ben@example.com>", encoded: bool = False) -> bytes:
    """As Outlook and Gmail attach a message (7bit, as RFC 2046 says), or base64-encoded as some clients do."""
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = sender, "sales@example.com", "FW: Quote for 40 seats"
    outer["Message-ID"] = "<fwd-attached@example.com>"
    outer.set_content("See the attached enquiry.")
    if encoded:
        outer.add_attachment(inner, maintype="message", subtype="rfc822", filename="enquiry.eml")
    else:
        outer.add_attachment(message_from_bytes(inner, policy=default))
    return bytes(outer)


@pytest.mark.parametrize("encoded", [False, True])
def test_an_attached_message_is_read_as_the_original(encoded):
    inner = plain_message(FORM, sender="Jo Smith <jo@client.test>", subject="Quote for 40 seats",
                          message_id="<original@client.test>")
    raw = attached_forward(inner, encoded=encoded)
    assert (b"Content-Transfer-Encoding: base64" in raw) is encoded

    original = forwarded_original(raw, parse_message(raw))

    assert original.sender.email == "jo@client.test" and original.message_id == "<original@client.test>"
    assert original.identity == parse_message(inner).identity  # the enquiry, if it came itself, is a duplicate


# --- on Dovecot -------------------------------------------------------------------------------


def show(env: Env, lead_id: int) -> dict:
    code, out, err = env.cli("leads", "show", str(lead_id))
    assert code == 0, err
    return json.loads(out)


def test_an_owners_forward_becomes_the_original_senders_lead_owned_by_the_owner(env, mailbox):
    mailbox.append(plain_message(GMAIL, sender="Ben <ben@example.com>", subject="Fwd: Quote for 40 seats"))
    mailbox.append(attached_forward(plain_message(FORM.replace("jo@client.test", "al@client.test")
                                                  .replace("Jo Smith", "Al Jones"),
                                                  sender="Al Jones <al@client.test>", subject="Brochure?"),
                                    sender="Ana <ana@example.com>"))
    env.configure(mailbox.section())
    env.upgrade()

    assert env.poll() == 0

    jo, al = show(env, 1), show(env, 2)
    assert (jo["name"], jo["email"], jo["phone"], jo["company"]) == ("Jo Smith", "jo@client.test",
                                                                      "+370 600 00000", "ACME")
    assert (jo["owner"], jo["subject"]) == ("ben@example.com", "Quote for 40 seats")
    created = jo["activities"][0]["details"]
    assert (created["forwarded_by"], created["assigned_by"], created["from"]) == (
        "ben@example.com", "forwarded by its owner", "Jo Smith <jo@client.test>")
    assert (al["email"], al["owner"], al["subject"]) == ("al@client.test", "ana@example.com", "Brochure?")
    assert [e.outcome for e in env.ledger()] == ["lead", "lead"]


def test_the_contacts_next_mail_joins_the_forwarded_lead_and_a_forward_of_it_again_joins_too(env, mailbox):
    mailbox.append(plain_message(GMAIL, sender="Ben <ben@example.com>", subject="Fwd: Quote for 40 seats"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test", sender="Jo Smith <jo@client.test>"))
    mailbox.append(plain_message(OUTLOOK, sender="Ana <ana@example.com>", subject="FW: Quote for 40 seats"))

    env.poll()

    assert len(env.leads()) == 1
    assert [a["kind"] for a in show(env, 1)["activities"]].count("email") == 2
    assert [(e.outcome, e.reason) for e in env.ledger()][1:] == [("attached", "repeat sender"),
                                                                  ("attached", "forwarded")]


def test_a_forward_alone_of_a_contact_with_an_open_lead_joins_it(env, mailbox):
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test", sender="Jo Smith <jo@client.test>"))
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    mailbox.append(plain_message(GMAIL.replace(FORM, "Could you send me the quote again?"),
                                 sender="Ben <ben@example.com>", subject="Fwd: Quote for 40 seats"))

    env.poll()  # no form in it: the contact is the original's sender, read from the forwarded block alone

    assert len(env.leads()) == 1
    assert [(e.outcome, e.reason) for e in env.ledger()][-1] == ("attached", "forwarded")


def test_a_forwarded_out_of_office_is_no_enquiry():
    from leadtap.ingest.prepare import prepare_message

    inner = plain_message("I am away until Monday.", sender="Jo Smith <jo@client.test>", subject="Out of office",
                          headers={"Auto-Submitted": "auto-replied"})

    assert prepare_message(1, attached_forward(inner), []).forwarded is None
    assert prepare_message(1, attached_forward(plain_message(FORM, sender="Jo <jo@client.test>")), []).forwarded


@pytest.mark.parametrize("subject", ["VB: Quote for 40 seats", "ENC: Quote for 40 seats", "Doorst: Quote for 40 seats",
                                     "Fwd[2]: Quote for 40 seats", "Persiųsta: Quote for 40 seats"])
def test_a_forwards_subject_in_other_languages_is_known(subject):
    raw = plain_message(GMAIL, sender="Ben <ben@example.com>", subject=subject)

    assert forwarded_original(raw, parse_message(raw)).sender.email == "jo@client.test"
