"""A new contact at a company with an open lead goes to that lead's owner
(``[assignment] company_owner``: HubSpot's owner sync with the company) —
from mail, on Dovecot, and entered by hand; a free-mail domain names no
company. On SQLite and PostgreSQL."""

from __future__ import annotations

import json

from tests.helpers import enquiry
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)

COMPANY = '\n[assignment]\ncompany_owner = true\nfree_mail = ["Example-Free.test"]\n'


def owners(env: Env) -> dict[str, str | None]:
    return {lead["email"]: lead["owner"] for lead in env.leads()}


def test_a_colleague_of_a_known_contact_goes_to_the_companys_owner(env, mailbox):
    for name, email in (("Jo", "jo@acme.test"), ("Al", "al@gmail.com"), ("Kim", "kim@acme.test"),
                        ("Bo", "bo@gmail.com"), ("Cy", "cy@example-free.test"), ("Di", "di@example-free.test")):
        mailbox.append(enquiry(name=name, email=email))
    env.configure(mailbox.section(), extra=COMPANY)
    env.upgrade()

    assert env.poll() == 0

    owner = owners(env)
    assert owner["kim@acme.test"] == owner["jo@acme.test"]  # in the same batch as Jo's lead
    assert owner["al@gmail.com"] != owner["bo@gmail.com"]  # free mail: the rotation
    assert owner["cy@example-free.test"] != owner["di@example-free.test"]  # added to the free-mail list
    kim = [lead for lead in env.leads() if lead["email"] == "kim@acme.test"][0]
    code, out, _ = env.cli("leads", "show", str(kim["id"]))
    assert json.loads(out)["activities"][0]["details"]["assigned_by"] == "follows company"

    mailbox.append(enquiry(name="Lu", email="lu@ACME.test"))
    env.poll()
    assert owners(env)["lu@ACME.test"] == owner["jo@acme.test"]  # a later batch, any case
    code, out, err = env.cli("leads", "add", "--name", "Max", "--email", "max@acme.test")
    assert code == 0 and f"owner {owner['jo@acme.test']}" in out, err


def test_without_company_owner_a_colleague_takes_the_rotations_turn(env, mailbox):
    for name, email in (("Jo", "jo@acme.test"), ("Kim", "kim@acme.test")):
        mailbox.append(enquiry(name=name, email=email))
    env.configure(mailbox.section())
    env.upgrade()

    env.poll()

    owner = owners(env)
    assert owner["kim@acme.test"] != owner["jo@acme.test"]


def test_a_mail_lead_takes_the_default_type(env, mailbox):
    mailbox.append(enquiry(name="Jo", email="jo@acme.test"))
    env.configure(mailbox.section())
    closed = 'closed_statuses = ["Qualified", "Disqualified"]\n'  # the [leads] table write_config makes
    env.path.write_text(env.path.read_text().replace(
        closed, closed + 'types = ["New business", "Upsell"]\ndefault_type = "Upsell"\n', 1))
    env.upgrade()

    env.poll()

    assert [lead["type"] for lead in env.leads()] == ["Upsell"]
