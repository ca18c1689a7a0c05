"""Leads entered by hand (``leadtap leads add``): a phone enquiry gets an
owner, a deal, its status's tasks and the new-lead email as mail's leads do;
a contact with an open lead is refused with its id, or joins it; every bad
entry is one clear line that changes nothing. On SQLite and PostgreSQL, with
the email sent to a real SMTP server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from leadtap.core.store.db import Activity, Lead, Opportunity, Task
from tests.test_reminder_ladder import owner_of, rows
from tests.test_reminders import Remind, remind, smtp  # noqa: F401  (the fixtures)

PHONE = """
[leads]
statuses = ["New", "Attempting", "Contacted", "Qualified", "Disqualified"]
closed_statuses = ["Qualified", "Disqualified"]
sources = ["Email", "Phone", "Fair"]
default_source = "Email"
required = ["phone"]

[[statuses]]
name = "Attempting"
set_on = "outreach"
locked = true

[[statuses]]
name = "Contacted"
tasks = [ { title = "Send {{ lead.name }} the brochure", due = "2d" } ]

[notifications]
new_lead = "new_lead"
"""

JO = ("--name", "Jo Smith", "--email", "Jo@Client.test", "--phone", "+370 600 00000", "--company", "ACME")


def lead_count(remind: Remind) -> int:
    return rows(remind, select(func.count()).select_from(Lead))[0][0]


def shown(remind: Remind, lead_id: int) -> dict:
    code, out, err = remind.cli("leads", "show", str(lead_id))
    assert code == 0, err
    return json.loads(out)


def test_a_phone_enquiry_becomes_a_lead_with_an_owner_a_deal_and_the_new_lead_email(remind, smtp):
    remind.configure(PHONE)

    code, out, err = remind.cli("leads", "add", *JO, "--source", "phone", "--message", "Wants a quote for 40 seats",
                                "--field", "budget=5000")

    assert code == 0, err
    assert out.splitlines()[0] == ("lead 1: created, New, source Phone, owner ana@example.com (rotation); "
                                   "opportunity created")
    lead = shown(remind, 1)
    assert (lead["name"], lead["email"], lead["phone"], lead["company"]) == (
        "Jo Smith", "Jo@Client.test", "+370 600 00000", "ACME")
    assert (lead["status"], lead["source"], lead["owner"], lead["fields"]) == ("New", "Phone", "ana@example.com",
                                                                              {"budget": "5000"})
    assert lead["message"] == "Wants a quote for 40 seats" and lead["opportunity"]["stage"] == "Discovery"
    created = [a for a in lead["activities"] if a["kind"] == "created"]
    assert [(a["summary"], a["details"]["by"], a["details"]["assigned_by"]) for a in created] == [
        ("entered by hand", "cli", "rotation")]
    (email,) = smtp.handler.to("ana@example.com")
    assert email["Subject"].startswith("New lead #1")
    assert "Wants a quote for 40 seats" in email.get_body(("plain",)).get_content()
    assert remind.cli("leads", "add", "--name", "Al Jones", "--phone", "+1 555 0100")[0] == 0
    assert owner_of(remind, 2) == "ben@example.com"  # the rotation's turn was taken


def test_an_owner_who_enters_a_lead_owns_it_and_is_not_emailed_about_it(remind, smtp):
    remind.configure(PHONE)

    code, out, err = remind.cli("leads", "add", *JO, "--status", "Contacted", "--by", "ben@example.com")

    assert code == 0, err
    assert owner_of(remind, 1) == "ben@example.com" and smtp.messages == []
    tasks = rows(remind, select(Task.title, Task.status, Task.owner_id).where(Task.lead_id == 1))
    assert [(t.title, t.status) for t in tasks] == [("Send Jo Smith the brochure", "Contacted")]
    assert remind.cli("leads", "add", "--name", "Kim Lee", "--phone", "1", "--owner", "sue@example.com",
                      "--by", "ben@example.com")[0] == 0
    assert owner_of(remind, 2) == "sue@example.com" and [m["To"] for m in smtp.messages] == ["sue@example.com"]


def test_a_contact_with_an_open_lead_is_refused_with_its_id_or_joins_it(remind, smtp):
    remind.configure(PHONE)
    assert remind.cli("leads", "add", *JO)[0] == 0

    code, out, err = remind.cli("leads", "add", "--name", "Jo S.", "--email", "jo@client.test", "--phone", "2")

    assert code == 1 and out == ""
    assert err.strip() == ("leadtap: jo@client.test is already lead 1 (New, ana@example.com's); "
                           "--attach adds this enquiry to it")
    code, out, err = remind.cli("leads", "add", "--email", "jo@client.test", "--phone", "2", "--message",
                                "called again about the quote", "--attach", "--by", "ana@example.com")
    assert code == 0, err
    assert out.splitlines()[0] == "lead 1: note added"
    assert lead_count(remind) == 1
    (note,) = [a for a in shown(remind, 1)["activities"] if a["kind"] == "note"]
    assert note["summary"] == "enquiry entered by hand: called again about the quote (email jo@client.test, phone 2)"
    assert remind.cli("leads", "set", "1", "--status", "Disqualified")[0] == 0
    assert remind.cli("leads", "add", *JO)[0] == 0  # a closed lead is history: a new enquiry is a new lead
    assert lead_count(remind) == 2


@pytest.mark.parametrize(
    "args, words",
    [
        (("--company", "ACME"), "a lead needs a name, an email or a phone"),
        (("--name", "Jo", "--email", "jo@", "--phone", "1"), "'jo@' is not an email address"),
        (("--name", "Jo"), "a new lead needs phone"),
        (("--name", "Jo", "--phone", "1", "--source", "Radio"), "unknown source 'Radio'; expected one of Email, "
                                                              "Phone, Fair"),
        (("--name", "Jo", "--phone", "1", "--status", "Won"), "unknown status 'Won'"),
        (("--name", "Jo", "--phone", "1", "--status", "Qualified"), "a lead is created in New or Contacted, not "
                                                                    "Qualified"),
        (("--name", "Jo", "--phone", "1", "--status", "Attempting"), "Attempting is set automatically (on outreach)"),
        (("--name", "Jo", "--phone", "1", "--owner", "zed@example.com"), "'zed@example.com' is not an active owner"),
        (("--name", "Jo", "--phone", "1", "--field", "source=Partner"), "source is not a custom field: give it as "
                                                                        "--source"),
        (("--name", "Jo", "--phone", "1", "--by", "zed@example.com"), "'zed@example.com' is not an owner"),
        (("--name", "Jo", "--phone", "1", "--field", "budget"), "--field 'budget': NAME=VALUE is expected"),
    ],
)
def test_every_bad_entry_is_one_clear_line_and_changes_nothing(remind, smtp, args, words):
    remind.configure(PHONE)

    code, out, err = remind.cli("leads", "add", *args)

    assert (code, out) == (1, "") and err.count("\n") == 1 and words in err, err
    assert lead_count(remind) == 0 and rows(remind, select(Activity.id)) == []
    assert rows(remind, select(Opportunity.id)) == [] and smtp.messages == []


def test_create_in_limits_the_statuses_a_lead_is_entered_in(remind, smtp):
    remind.configure(PHONE.replace('required = ["phone"]\n', '') + '\n[pipeline]\ncreate_in = ["New"]\n')

    code, _, err = remind.cli("leads", "add", "--name", "Jo", "--status", "Contacted")

    assert code == 1 and "a lead is created in New, not Contacted" in err
    assert remind.cli("leads", "add", "--name", "Jo")[0] == 0


# --- leads edit: fields and source without a status move ------------------------------------

FIELDS = """
[[leads.fields]]
name = "industry"
type = "choice"
choices = ["Retail", "Logistics", "Software"]

[[leads.fields]]
name = "seats"
type = "number"

[[leads.fields]]
name = "decision_date"
type = "date"
"""


def test_an_edit_changes_fields_and_source_but_never_the_status(remind, smtp):
    remind.configure(PHONE.replace("[[statuses]]", FIELDS + "\n[[statuses]]", 1))
    assert remind.cli("leads", "add", *JO, "--field", "budget=5000")[0] == 0

    code, out, err = remind.cli("leads", "edit", "1", "--company", "ACME Baltics", "--source", "fair",
                                "--field", "industry=retail", "--field", "seats=40", "--field", "budget=",
                                "--by", "ana@example.com")

    assert code == 0, err
    assert out.splitlines() == ["lead 1: budget cleared, company = ACME Baltics, industry = Retail, seats = 40; "
                                "source Email → Fair"]
    lead = shown(remind, 1)
    assert (lead["status"], lead["company"], lead["source"]) == ("New", "ACME Baltics", "Fair")
    assert lead["fields"] == {"industry": "Retail", "seats": "40"}
    kinds = [(a["kind"], a["details"]["by"]) for a in lead["activities"]][-2:]
    assert kinds == [("fields", "ana@example.com"), ("source", "ana@example.com")]
    code, _, err = remind.cli("leads", "edit", "1", "--company", "ACME Baltics")
    assert code == 1 and "lead 1: nothing changes" in err


@pytest.mark.parametrize(
    "args, words",
    [
        (("--field", "industry=Farming"), "lead 1: 'Farming' is not a choice of industry: one of Retail, Logistics, "
                                          "Software"),
        (("--field", "seats=many"), "lead 1: seats is a number, not 'many'"),
        (("--field", "decision_date=next week"), "lead 1: decision_date is a date (YYYY-MM-DD), not 'next week'"),
        (("--field", "decision_date=2026-02-30"), "decision_date is a date (YYYY-MM-DD), not '2026-02-30'"),
        (("--phone", ""), "lead 1: phone cannot be cleared: New needs it"),
        (("--email", "jo at client"), "lead 1: 'jo at client' is not an email address"),
        (("--field", "source=Fair"), "lead 1: source is not a custom field: give it as --source"),
        (("--source", "Radio"), "unknown source 'Radio'"),
        ((), "lead 1: nothing changes"),
    ],
)
def test_every_bad_edit_is_one_clear_line_and_changes_nothing(remind, smtp, args, words):
    remind.configure(PHONE.replace("[[statuses]]", FIELDS + "\n[[statuses]]", 1))
    assert remind.cli("leads", "add", *JO)[0] == 0
    before = shown(remind, 1)

    code, out, err = remind.cli("leads", "edit", "1", *args)

    assert (code, out) == (1, "") and err.count("\n") == 1 and words in err, err
    assert shown(remind, 1) == before


def test_declared_fields_are_checked_when_a_move_or_an_entry_sets_them(remind, smtp):
    remind.configure(PHONE.replace("[[statuses]]", FIELDS + "\n[[statuses]]", 1))

    code, _, err = remind.cli("leads", "add", *JO, "--field", "seats=a few")
    assert code == 1 and "seats is a number, not 'a few'" in err
    assert remind.cli("leads", "add", *JO, "--field", "industry=software")[0] == 0
    assert shown(remind, 1)["fields"] == {"industry": "Software"}
    code, _, err = remind.cli("leads", "set", "1", "--status", "Contacted", "--field", "industry=Mining")
    assert code == 1 and "'Mining' is not a choice of industry" in err and shown(remind, 1)["status"] == "New"


def test_a_converted_lead_is_edited_by_admins_only(remind, smtp):
    remind.configure(PHONE + '\n[pipeline]\nqualified = "Qualified"\nlock_converted = true\nadmins = ["sue@example.com"]\n')
    assert remind.cli("leads", "add", *JO)[0] == 0
    assert remind.cli("leads", "set", "1", "--status", "Qualified")[0] == 0

    code, _, err = remind.cli("leads", "edit", "1", "--company", "X", "--by", "ana@example.com")
    assert code == 1 and "lead 1 is Qualified: only an admin can change it" in err
    assert remind.cli("leads", "edit", "1", "--company", "X", "--by", "sue@example.com")[0] == 0


# --- leads log: calls and meetings ----------------------------------------------------------

CALLS = PHONE.replace('''[[statuses]]
name = "Contacted"''', '''[[statuses]]
name = "Contacted"
set_on = "reply"''')


def test_a_logged_call_moves_the_lead_as_outreach_and_a_connected_one_as_a_reply(remind, smtp):
    remind.configure(CALLS)
    assert remind.cli("leads", "add", *JO)[0] == 0
    assert remind.cli("leads", "add", "--name", "Al Jones", "--phone", "2")[0] == 0

    code, out, err = remind.cli("leads", "log", "1", "call", "--outcome", "no-answer", "--note", "rang twice",
                                "--by", "ana@example.com")
    assert code == 0, err
    assert out.splitlines()[0] == "lead 1: call: no-answer — rang twice (logged); New → Attempting"
    at = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d 10:30+00:00")  # an offset given
    code, out, err = remind.cli("leads", "log", "2", "call", "--outcome", "connected", "--at", at)
    assert code == 0, err
    assert "New → Contacted; task due" in out

    first, second = shown(remind, 1), shown(remind, 2)
    assert first["status"] == "Attempting" and second["status"] == "Contacted"
    call, move = [a for a in first["activities"] if a["kind"] in ("call", "status")]
    assert (call["summary"], call["details"]["by"], call["details"]["outcome"]) == (
        "call: no-answer — rang twice", "ana@example.com", "no-answer")
    assert (move["summary"], move["details"]["by"], move["details"]["how"]) == ("New → Attempting", "automation",
                                                                                "rule")
    (logged,) = [a for a in second["activities"] if a["kind"] == "call"]
    assert logged["details"]["at"].endswith("T10:30:00+00:00")


def test_a_meeting_booked_for_a_later_day_connects_the_lead_and_bad_logs_change_nothing(remind, smtp):
    remind.configure(CALLS)
    assert remind.cli("leads", "add", *JO)[0] == 0

    for args, words in [(("call", "--outcome", "booked-a-demo"), "'booked-a-demo' is not an outcome of a call"),
                        (("call", "--at", "2999-01-01"), "a call is logged once it happened"),
                        (("call", "--at", "yesterday"), "--at 'yesterday' is not a date or a time")]:
        code, out, err = remind.cli("leads", "log", "1", *args)
        assert code == 1 and out == "" and words in err, (args, err)
    assert [a["kind"] for a in shown(remind, 1)["activities"]] == ["created", "opportunity"]

    code, out, err = remind.cli("leads", "log", "1", "meeting", "--outcome", "booked", "--at", "2999-01-01")
    assert code == 0, err
    assert shown(remind, 1)["status"] == "Contacted"


def test_a_note_with_a_contact_date_is_a_logged_contact_and_moves_the_lead_as_a_reply(remind, smtp):
    """Hanna's note with a contact date: the contact was reached (at the stand, by chat)."""
    remind.configure(CALLS)
    assert remind.cli("leads", "add", *JO)[0] == 0

    code, out, err = remind.cli("leads", "note", "1", "Met at the fair stand", "--contacted", "--by", "ana@example.com")

    assert code == 0, err
    assert out.startswith("lead 1: contact — Met at the fair stand (logged); New → Contacted; task due ")
    (logged,) = [a for a in shown(remind, 1)["activities"] if a["kind"] == "contact"]
    assert (logged["summary"], logged["details"]["by"]) == ("contact — Met at the fair stand", "ana@example.com")
    code, _, err = remind.cli("leads", "log", "1", "contact", "--outcome", "connected")
    assert code == 1 and "'connected' is not an outcome of a contact: it has none" in err


# --- lead types (HubSpot's) -------------------------------------------------------------------

TYPES = PHONE.replace('required = ["phone"]\n', 'required = ["phone"]\ntypes = ["New business", "Upsell", '
                                                  '"Re-attempting"]\n') + '''
[pipeline]
disqualified = "Disqualified"
disqualify_reasons = ["Bad timing", "No budget"]
follow_up = { reasons = ["Bad timing"], after = "90d", type = "Re-attempting" }
'''


def test_a_lead_has_a_type_its_follow_up_is_re_attempting_and_an_edit_changes_it(remind, smtp):
    remind.configure(TYPES)

    assert remind.cli("leads", "add", *JO)[0] == 0
    assert remind.cli("leads", "add", "--name", "Al", "--phone", "2", "--type", "upsell")[0] == 0
    assert (shown(remind, 1)["type"], shown(remind, 2)["type"]) == ("New business", "Upsell")
    code, out, err = remind.cli("leads", "set", "1", "--status", "Disqualified", "--reason", "Bad timing")
    assert code == 0 and "follow-up lead (Re-attempting)" in out, err
    assert shown(remind, 3)["type"] == "Re-attempting" and shown(remind, 3)["follow_up_of"] == 1

    code, out, err = remind.cli("leads", "edit", "2", "--type", "new business")
    assert code == 0 and out.strip() == "lead 2: type Upsell → New business", err
    code, _, err = remind.cli("leads", "edit", "2", "--type", "Renewal")
    assert code == 1 and "unknown type 'Renewal'; expected one of New business, Upsell, Re-attempting" in err
    code, _, err = remind.cli("leads", "add", "--name", "Kim", "--phone", "3", "--type", "Renewal")
    assert code == 1 and "unknown type 'Renewal'" in err and lead_count(remind) == 3
