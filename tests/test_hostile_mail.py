"""What a hostile review of forwards and deal moves on mail found, each a
test: a forward block that took days to read, a forged service mail winning
a deal, a forged owner's forward picking an owner, an owner's mail to a
contact carrying another's message, a forward of a forward, a signature's
rule hiding the forward."""

from __future__ import annotations

import json
import time

import pytest
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from sqlalchemy import update

from leadtap.core.store.db import Opportunity
from leadtap.ingest.forward import forwarded_original
from leadtap.ingest.parse import parse_message
from tests.helpers import enquiry, plain_message
from tests.test_deal_moves import DEALS
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)


def show(env: Env, lead_id: int) -> dict:
    code, out, err = env.cli("leads", "show", str(lead_id))
    assert code == 0, err
    return json.loads(out)


# --- 1. a hostile forward block: MAILTO_RE is quadratic and no deadline can stop it ------------

def test_a_long_from_line_in_a_forward_block_does_not_hang_its_mailbox():
    """Not a speed target: before, 100 KB took 15 s and 1 MB half an hour (a
    lazy prefix backtracked); now the value is cut at 998 characters and the
    pattern searched, so 1 MB reads at once — minutes of margin here."""
    body = "---------- Forwarded message ---------\nFrom: a" + " " * 1_000_000 + "b\nSubject: x\n\nhello\n"
    raw = plain_message(body, sender="Spammer <x@spam.test>", subject="Fwd: x")  # any sender: prepare reads it
    message = parse_message(raw)

    started = time.perf_counter()
    forwarded_original(raw, message)
    assert time.perf_counter() - started < 30


# --- 2. an owner's outreach to a contact that carries a forward is taken for a forwarded enquiry

def supplier_mail() -> bytes:
    return plain_message("Delivery in week 50.", sender="Supplier <orders@vendor.test>", subject="Delivery dates")


def outreach_with_attached_message(to: str) -> bytes:
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Cc"] = "Ana <ana@example.com>", to, "sales@example.com"
    outer["Subject"] = "Your quote"
    outer["Message-ID"] = "<outreach-1@example.com>"
    outer.set_content("Hi Jo, the quote; and our supplier's confirmation attached.")
    outer.add_attachment(message_from_bytes(supplier_mail(), policy=default))
    return bytes(outer)


INLINE = """Hi Jo, see below what our supplier says.

---------- Forwarded message ---------
From: Supplier <orders@vendor.test>
Date: Thu, 19 Nov 2026 at 14:02
Subject: Delivery dates

Delivery in week 50.
"""


def test_an_owners_mail_to_a_contact_forwarding_a_third_partys_message_is_outreach(env, mailbox):
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))  # lead 1, Ana's
    env.configure(mailbox.section())
    env.upgrade()
    env.poll()
    mailbox.append(outreach_with_attached_message("Jo Smith <jo@client.test>"))
    mailbox.append(plain_message(INLINE, sender="Ana <ana@example.com>", subject="Fwd: Delivery dates",
                                 to="Jo Smith <jo@client.test>", headers={"Cc": "sales@example.com"}))

    env.poll()

    assert [lead["email"] for lead in env.leads()] == ["jo@client.test"]  # the supplier is no lead
    assert [(e.outcome, e.reason) for e in env.ledger()][1:] == [("attached", "outreach")] * 2
    assert [a["kind"] for a in show(env, 1)["activities"]].count("outreach") == 2


# --- 3. a forged e-signature service's mail wins a victim's deal, whatever the receiving server said

AUTH = '''
[smtp]
host = "127.0.0.1"
port = 9
security = "plain"
from = "leadtap <crm@example.com>"

[commands]
secret_file = "{secret}"
address = "crm@example.com"
authserv_id = "mx.example.com"
'''
FAILED = "mx.example.com; spf=fail smtp.mailfrom=evil.test; dkim=none; dmarc=fail header.from=docusign.net"


def test_a_service_mail_failing_dmarc_does_not_move_a_deal(env, mailbox, tmp_path):
    (tmp_path / "secret").write_text("s3cret-for-the-tests-only-0123456789abcdef")
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra=DEALS + AUTH.format(secret=tmp_path / "secret"))
    env.upgrade()
    env.poll()
    env.execute(update(Opportunity).where(Opportunity.lead_id == 1)
                .values(fields={"amount": "900", "close_date": "2026-12-31"}))

    mailbox.append(plain_message("All parties have completed the envelope.", sender="DocuSign <dse@docusign.net>",
                                 subject="Completed: Please DocuSign: Quote.pdf", to="Jo Smith <jo@client.test>",
                                 headers={"Cc": "sales@example.com", "Authentication-Results": FAILED}))
    env.poll()

    jo = show(env, 1)
    assert (jo["opportunity"]["stage"], jo["status"]) == ("Discovery", "New")  # is: ("Won", "Qualified")


# --- 4. a forged owner's forward picks the new lead's owner, past the rotation ----------------------

FORGED_FORWARD = """---------- Forwarded message ---------
From: Victim <victim@elsewhere.test>
Subject: Quote

Name: Victim
Email: victim@elsewhere.test
Message: call me
"""


def test_a_forward_from_an_owner_failing_dmarc_is_not_the_owners(env, mailbox, tmp_path):
    (tmp_path / "secret").write_text("s3cret-for-the-tests-only-0123456789abcdef")
    env.configure(mailbox.section(), extra=AUTH.format(secret=tmp_path / "secret"))
    env.upgrade()
    for n in range(3):  # a spammer makes every lead Cy's, however the rotation turns
        mailbox.append(plain_message(FORGED_FORWARD.replace("victim", f"victim{n}"), sender="Cy <cy@example.com>",
                                     subject="Fwd: Quote", headers={"Authentication-Results": FAILED.replace(
                                         "docusign.net", "example.com")}))
    env.poll()

    assert [lead["owner"] for lead in env.leads()] != ["cy@example.com"] * 3


# --- 5. a forward of a forward: the enquiry is the innermost, not the colleague who passed it on ----

NESTED = """Please add this one.

---------- Forwarded message ---------
From: Ana <ana@example.com>
Date: Thu, 19 Nov 2026 at 15:00
Subject: Fwd: Quote for 40 seats
To: Ben <ben@example.com>

Ben, yours (I am away).

---------- Forwarded message ---------
From: Jo Smith <jo@client.test>
Date: Thu, 19 Nov 2026 at 14:02
Subject: Quote for 40 seats
To: Ana <ana@example.com>

Could you quote 40 seats?
"""


@pytest.mark.parametrize("middle", ["Ana <ana@example.com>", "Front desk <desk@example.com>"])
def test_a_forward_of_a_forward_is_the_original_enquiry(env, mailbox, middle):
    mailbox.append(plain_message(NESTED.replace("Ana <ana@example.com>", middle), sender="Ben <ben@example.com>",
                                 subject="Fwd: Fwd: Quote for 40 seats"))
    env.configure(mailbox.section())
    env.upgrade()

    env.poll()

    # is: Ana (an owner) -> not_lead "from an owner"; the front desk -> a lead of desk@example.com
    assert [(lead["email"], lead["owner"]) for lead in env.leads()] == [("jo@client.test", "ben@example.com")]


# --- 6. only the first marker line is tried: a signature's rule hides the forward below it -----------

SIGNED = """Please take care of this one.

Ben Berg
______________________________
Sales | ACME Ltd | +370 600 00001

---------- Forwarded message ---------
From: Jo Smith <jo@client.test>
Date: Thu, 19 Nov 2026 at 14:02
Subject: Quote for 40 seats

Could you quote 40 seats?
"""


def test_a_rule_in_the_forwarders_signature_does_not_hide_the_forward():
    raw = plain_message(SIGNED, sender="Ben <ben@example.com>", subject="Fwd: Quote for 40 seats")

    original = forwarded_original(raw, parse_message(raw))

    assert original is not None and original.sender.email == "jo@client.test"  # is: None (no lead)


def test_check_says_whether_a_from_address_is_vouched_for(env, mailbox, tmp_path):
    env.configure(mailbox.section(), extra=DEALS)
    env.upgrade()
    out = env.cli("check")[1]
    assert "ok    senders: warning: a From address is taken as it comes" in out and "*@docusign.net" in out
