"""What a hostile review of the reply commands and of ``leads add|edit|log``
and ``owners`` found, each a test: one owner taking another's contact by
editing an email, a lead entered by hand not following its returning
contact's owner, an edit clearing every way to reach the contact, numbers
that are not numbers, field names that dodge the rules by their case,
``/away until`` without a day, a call logged long before the lead."""

from __future__ import annotations

from sqlalchemy import select

from leadtap.core.rules.lifecycle import FieldSpec, Refused
from leadtap.core.store.db import Lead
from tests.helpers import enquiry, plain_message
from tests.test_leads_by_hand import FIELDS, JO, PHONE, lead_count, shown
from tests.test_reminder_ladder import owner_of, rows
from tests.test_reminders import Remind, remind, smtp  # noqa: F401  (the fixtures)
from tests.test_replies import reply, replying  # noqa: F401
from tests.test_ingest import env  # noqa: F401

import pytest


# --- 1. an owner takes another owner's contact with /field email= (or leads edit --email) ----------


def test_field_email_by_reply_cannot_take_another_owners_contact(replying, smtp, mailbox):
    # lead 1 Jo -> ana (fixture); 2 Al -> ben; 3 Kim -> cy; 4 Lu -> ana
    for name, email in (("Al Jones", "al@client.test"), ("Kim Lee", "kim@client.test"), ("Lu Wu", "lu@client.test")):
        mailbox.append(enquiry(name=name, email=email))
    replying.cli("poll")
    assert [replying_owner(replying, i) for i in (2, 4)] == ["ben@example.com", "ana@example.com"]
    (for_lu,) = [m for m in smtp.messages if m["To"] == "ana@example.com" and "#4" in m["Subject"]]

    mailbox.append(reply(for_lu, "/field email=al@client.test"))  # ana, on her own lead 4
    replying.cli("poll")
    mailbox.append(plain_message("Any news on my quote?", sender="Al Jones <al@client.test>", subject="quote"))
    replying.cli("poll")

    # ben's contact Al must stay ben's: the edit is refused as `leads add` refuses a contact with an open lead
    went_to = [i for i in (2, 4) if any(a["summary"] == "quote" for a in shown(replying, i)["activities"])]
    assert went_to == [2], f"Al's mail went to lead(s) {went_to}; lead 4 is now {shown(replying, 4)['email']}"


def replying_owner(env, lead_id: int) -> str | None:
    return shown(env, lead_id)["owner"]


def test_leads_edit_email_cannot_make_a_second_open_lead_for_one_contact(remind, smtp):
    remind.configure(PHONE)
    assert remind.cli("leads", "add", *JO)[0] == 0  # jo@client.test, ana's
    assert remind.cli("leads", "add", "--name", "Al", "--phone", "2")[0] == 0  # ben's

    code, out, err = remind.cli("leads", "edit", "2", "--email", "JO@client.test", "--by", "ben@example.com")

    assert code == 1 and "JO@client.test is already the contact of another open lead" in err, out
    assert rows(remind, select(Lead.id).where(Lead.contact == "jo@client.test")) == [(1,)]


# --- 2. leads add does not follow a returning contact's owner (mail does) -------------------------


def test_leads_add_for_a_returning_contact_goes_to_their_earlier_owner_without_a_turn(remind, smtp):
    remind.configure(PHONE)
    assert remind.cli("leads", "add", *JO)[0] == 0  # ana (rotation)
    assert remind.cli("leads", "set", "1", "--status", "Disqualified")[0] == 0

    assert remind.cli("leads", "add", *JO)[0] == 0  # Jo calls again
    assert remind.cli("leads", "add", "--name", "Al", "--phone", "2")[0] == 0

    # as mail does (intake.choose_owner): Jo follows ana, no turn is taken, the next new contact is ben's
    assert (owner_of(remind, 2), owner_of(remind, 3)) == ("ana@example.com", "ben@example.com")


def test_leads_add_with_everyone_in_the_role_away_is_entered_unowned_as_mail_is(remind, smtp):
    remind.configure(PHONE)
    for who in ("ana@example.com", "ben@example.com"):
        assert remind.cli("owners", "away", who, "--until", "2w")[0] == 0

    code, out, err = remind.cli("leads", "add", "--name", "Jo", "--phone", "1")

    # mail in the same hour makes the lead with no owner ("no active owner holds the role");
    # here the enquiry cannot be entered at all, and the words say "no *other* active owner"
    assert code == 0, err


# --- 3. an edit leaves a lead with no name, email nor phone ---------------------------------------


def test_an_edit_cannot_clear_every_way_to_reach_the_contact(remind, smtp):
    remind.configure(PHONE.replace('required = ["phone"]\n', ""))
    assert remind.cli("leads", "add", "--name", "Jo", "--email", "jo@client.test")[0] == 0

    code, out, err = remind.cli("leads", "edit", "1", "--name", "", "--email", "")

    assert code == 1 and "a lead keeps a name, an email or a phone" in err, out
    assert shown(remind, 1)["email"] == "jo@client.test"


# --- 4. number fields take Python literals that are not numbers people write ----------------------


@pytest.mark.parametrize("value", ["1_000", ",,1,", "1,2,3,4"])
def test_a_number_field_refuses_what_is_not_a_number(value):
    with pytest.raises(Refused):
        FieldSpec("seats", "number").checked(value)


# --- 5. reserved and built-in names pass in another case ------------------------------------------


@pytest.mark.parametrize("name", ["Status", "OWNER", "Source", "Email", "Seats"])
def test_reserved_built_in_and_declared_names_are_not_custom_fields_in_another_case(remind, smtp, name):
    remind.configure(PHONE.replace("[[statuses]]", FIELDS + "\n[[statuses]]", 1))
    assert remind.cli("leads", "add", *JO)[0] == 0

    code, out, err = remind.cli("leads", "edit", "1", "--field", f"{name}=not-what-it-seems")

    assert code == 1 and shown(remind, 1)["fields"] == {}, out


# --- 6. /away until with no day, or Until capitalised --------------------------------------------


def test_away_until_without_a_day_is_refused_and_until_is_read_in_any_case(replying, smtp, mailbox):
    (new_lead,) = smtp.messages
    mailbox.append(reply(new_lead, "/away until\n/away Until 2999-12-20"))

    replying.cli("poll")

    body = smtp.messages[-1].get_body(("plain",)).get_content()
    # "/away until" (the day forgotten) sets ana away with no end; "Until" is refused as "not a duration"
    assert "/away until\n    refused" in body, body
    assert "/away Until 2999-12-20\n    done: ana@example.com is away until 2999-12-20" in body, body


# --- 7. a call logged centuries before the lead existed moves it -----------------------------------


def test_a_call_is_not_logged_before_the_lead_existed(remind, smtp):
    remind.configure(PHONE)
    assert remind.cli("leads", "add", *JO)[0] == 0

    code, out, err = remind.cli("leads", "log", "1", "call", "--at", "1900-01-01")

    assert code == 1 and shown(remind, 1)["status"] == "New", out  # main: "call (logged); New → Attempting"
