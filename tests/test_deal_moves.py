"""Deals move on mail events (``[[opportunities.moves]]``), on Dovecot and
SQLite or PostgreSQL: the proposal emailed to the contact moves the deal to
Proposal, the e-signature service's "Completed" mail about the contact moves
it to Won — and the lead follows; a stage's required field missing is said on
the lead; the service's mail is never a lead."""

from __future__ import annotations

import json
from email.message import EmailMessage

from sqlalchemy import update

from leadtap.core.store.db import Opportunity
from tests.helpers import enquiry, plain_message
from tests.test_config_deals import MOVES
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)

DEALS = '''
[pipeline]
qualified = "Qualified"

[[statuses]]
name = "Offer submitted"
set_on = "stage:Proposal"
locked = true

[opportunities]
stages = ["Discovery", "Proposal", "Won", "Lost"]
required = { Proposal = ["amount"], Won = ["amount", "close_date"] }

''' + MOVES


def with_attachment(sender: str, to: str, subject: str, filename: str, cc: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    if cc:
        message["Cc"] = cc
    message.set_content("Please find it attached.")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=filename)
    return bytes(message)


def show(env: Env, lead_id: int) -> dict:
    code, out, err = env.cli("leads", "show", str(lead_id))
    assert code == 0, err
    return json.loads(out)


def test_a_proposal_emailed_and_a_signature_completed_move_the_deal_and_its_lead(env, mailbox):
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    mailbox.append(enquiry(name="Al Jones", email="al@client.test"))
    env.configure(mailbox.section(), extra=DEALS)
    env.upgrade()
    env.poll()
    env.execute(update(Opportunity).where(Opportunity.lead_id == 1)
                .values(fields={"amount": "900", "close_date": "2026-12-31"}))

    mailbox.append(with_attachment("Ana <ana@example.com>", "Jo Smith <jo@client.test>", "Your quote",
                                   "ACME Quote 2026.pdf"))
    mailbox.append(with_attachment("Ana <ana@example.com>", "Al Jones <al@client.test>", "Your quote",
                                   "Quote.pdf"))
    env.poll()

    jo, al = show(env, 1), show(env, 2)
    assert (jo["opportunity"]["stage"], jo["status"]) == ("Proposal", "Offer submitted")
    assert al["opportunity"]["stage"] == "Discovery"
    assert al["blocked"] == "outreach sent; deal not moved to Proposal: needs amount"

    mailbox.append(plain_message("All parties have completed the envelope.", sender="DocuSign <dse@docusign.net>",
                                 subject="Completed: Please DocuSign: ACME Quote 2026.pdf",
                                 to="Jo Smith <jo@client.test>", headers={"Cc": "sales@example.com"}))
    mailbox.append(plain_message("Completed.", sender="DocuSign <dse@docusign.net>", subject="Completed: other",
                                 to="someone@elsewhere.test"))
    env.poll()

    jo = show(env, 1)
    assert (jo["opportunity"]["stage"], jo["status"]) == ("Won", "Qualified")
    moved = [a for a in jo["activities"] if a["kind"] == "stage"]
    assert [(a["summary"], a["details"]["by"]) for a in moved] == [("Discovery → Proposal", "automation"),
                                                                   ("Proposal → Won", "automation")]
    assert [a["kind"] for a in jo["activities"]].count("mail") == 1
    assert len(env.leads()) == 2  # the service's mails are no leads
    code, _, err = env.cli("opportunities", "set", str(al["opportunity"]["id"]), "--stage", "Proposal", "--field",
                           "amount=500")
    assert code == 0 and show(env, 2)["blocked"] is None, err  # moved by hand: nothing waits any more
    assert [e.reason for e in env.ledger()][-2:] == ["a service's mail", "a service's mail about no open lead"]
