"""Mail moves leads (HubSpot's default automation, Hanna's locked statuses),
against Dovecot on SQLite and PostgreSQL: an owner's mail BCC'd to the sales
mailbox is outreach, the contact's answer after it is a reply, and the
statuses whose set_on matches follow — forward only, never for a lead a
person moved back, never on an auto-reply."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from tests.helpers import enquiry, plain_message
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)

PIPELINE = '''
[[statuses]]
name = "Attempting"
set_on = "outreach"
locked = true
tasks = [ { title = "Call {{ lead.name }}", due = "1d" } ]

[[statuses]]
name = "Contacted"
set_on = "reply"
'''


@pytest.fixture
def lead(env, mailbox):
    """Lead 1, contact jo@client.test, owner ana, status New."""
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra=PIPELINE)
    env.upgrade()
    assert env.poll() == 0
    return env


def show(env: Env, lead_id: int = 1) -> dict:
    return json.loads(env.cli("leads", "show", str(lead_id))[1])


def outreach(mailbox, message_id: str = "<out-1@example.com>") -> None:
    mailbox.append(plain_message("Hi Jo, when can we talk?", sender="Ana <ana@example.com>", subject="Your enquiry",
                                 to="Jo Smith <jo@client.test>", message_id=message_id))


def answer(mailbox, headers: dict | None = None) -> None:
    mailbox.append(plain_message("Tomorrow at ten works.", sender="Jo Smith <jo@client.test>", subject="Re: Your enquiry",
                                 headers={"In-Reply-To": "<out-1@example.com>", **(headers or {})}))


def test_a_bccd_outreach_moves_a_new_lead_to_attempting_and_creates_its_task(lead, mailbox):
    outreach(mailbox)

    assert lead.poll() == 0

    shown = show(lead)
    assert shown["status"] == "Attempting"
    assert [t["title"] for t in shown["tasks"]] == ["Call Jo Smith"]
    kinds = [a["kind"] for a in shown["activities"]]
    assert kinds[-3:] == ["outreach", "status", "task"]
    assert shown["activities"][-2]["details"]["by"] == "automation"
    assert len(lead.leads()) == 1  # the owner's mail is no lead


def test_the_contacts_answer_after_outreach_moves_it_on(lead, mailbox):
    outreach(mailbox)
    lead.poll()
    answer(mailbox)

    lead.poll()

    assert show(lead)["status"] == "Contacted"


def test_an_answer_without_outreach_moves_nothing(lead, mailbox):
    answer(mailbox)

    lead.poll()

    shown = show(lead)
    assert shown["status"] == "New"
    assert shown["last_activity_at"] is not None


def test_an_auto_reply_is_neither_a_reply_nor_outreach(lead, mailbox):
    outreach(mailbox)
    lead.poll()
    answer(mailbox, headers={"Auto-Submitted": "auto-replied"})

    lead.poll()

    assert show(lead)["status"] == "Attempting"


def test_a_lead_a_person_moved_back_is_left_alone_by_automation(lead, mailbox):
    outreach(mailbox)
    lead.poll()
    assert lead.cli("leads", "set", "1", "--status", "New", "--by", "ana@example.com")[0] == 0
    answer(mailbox)
    outreach(mailbox, "<out-2@example.com>")

    lead.poll()

    assert show(lead)["status"] == "New"


def test_an_owners_mail_to_nobody_we_know_is_recorded_as_not_a_lead(lead, mailbox):
    mailbox.append(plain_message("Lunch?", sender="Ben <ben@example.com>", to="friend@elsewhere.test"))

    code, out, _ = lead.cli("poll")

    assert code == 0 and "1 not a lead" in out
    assert [e.reason for e in lead.ledger()][-1] == "from an owner"
    assert len(lead.leads()) == 1


def test_mail_on_a_snoozed_lead_ends_its_snooze(lead, mailbox):
    assert lead.cli("leads", "snooze", "1", "3d")[0] == 0
    answer(mailbox)

    lead.poll()

    assert show(lead)["snoozed_until"] is None


def test_outreach_in_the_same_poll_as_the_enquiry_moves_the_new_lead(env, mailbox):
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    outreach(mailbox)
    env.configure(mailbox.section(), extra=PIPELINE)
    env.upgrade()

    assert env.poll() == 0

    shown = show(env)
    assert shown["status"] == "Attempting" and shown["last_activity_at"] is not None
    answer(mailbox)
    env.poll()
    assert show(env)["status"] == "Contacted"


def sent_folder(mailbox) -> str:
    """The same IMAP user's Sent folder, watched as a second mailbox."""
    return mailbox.section("sent", folder="Sent", kind="sent", templates=None)


def watch_sent(env, mailbox) -> None:
    """Start watching the Sent folder (a first pass marks where history ends)."""
    mailbox.append(plain_message("Old news", sender="Sales <sales@example.com>", to="jo@client.test"), folder="Sent")
    env.configure(mailbox.section(), sent_folder(mailbox), extra=PIPELINE)
    code, out, _ = env.cli("poll")
    assert code == 0 and "sent: nothing new" in out


def test_a_sent_folders_history_is_not_outreach(lead, mailbox):
    watch_sent(lead, mailbox)

    assert show(lead)["status"] == "New"
    assert [e for e in lead.ledger() if e.mailbox == "sent"] == []


def test_a_sent_folder_yields_outreach_and_never_a_lead(lead, mailbox):
    watch_sent(lead, mailbox)
    mailbox.append(plain_message("Hi Jo, when can we talk?", sender="Sales <sales@example.com>", to="jo@client.test",
                                 subject="Your enquiry", message_id="<sent-1@example.com>"), flags=(b"\\Seen",),
                   folder="Sent")
    mailbox.append(plain_message("See you", sender="Sales <sales@example.com>", to="friend@elsewhere.test",
                                 subject="Lunch"), folder="Sent")

    code, out, _ = lead.cli("poll")

    assert code == 0 and "sent: 1 added to a lead, 1 not a lead" in out
    assert show(lead)["status"] == "Attempting"
    assert len(lead.leads()) == 1
    assert [e.reason for e in lead.ledger() if e.mailbox == "sent"] == ["outreach", "sent to no open lead"]
    assert [flags - {b"\\Recent"} for flags in mailbox.flags("Sent").values()][1:] == [{b"\\Seen"}, set()]


def test_a_sent_copy_of_a_bccd_outreach_counts_once(lead, mailbox):
    watch_sent(lead, mailbox)
    outreach(mailbox)
    mailbox.append(plain_message("Hi Jo, when can we talk?", sender="Ana <ana@example.com>", subject="Your enquiry",
                                 to="Jo Smith <jo@client.test>", message_id="<out-1@example.com>"), folder="Sent")

    lead.poll()

    assert [a["kind"] for a in show(lead)["activities"]].count("outreach") == 1
    assert lead.poll() == 0 and [a["kind"] for a in show(lead)["activities"]].count("outreach") == 1


def test_a_sent_folder_reads_its_bcc(lead, mailbox):
    watch_sent(lead, mailbox)
    mailbox.append(plain_message("Hi Jo", sender="Ana <ana@example.com>", to="undisclosed-recipients:;",
                                 subject="Your enquiry", headers={"Bcc": "jo@client.test"}), folder="Sent")

    lead.poll()

    assert show(lead)["status"] == "Attempting"


def recreate(mailbox, folder: str) -> None:
    """Delete and create the folder again: the server gives it a new UIDVALIDITY."""
    with mailbox.client() as client:
        client.delete_folder(folder)
        client.create_folder(folder)


def sent_outreach(mailbox, message_id: str) -> None:
    mailbox.append(plain_message("Hi Jo, when can we talk?", sender="Sales <sales@example.com>", to="jo@client.test",
                                 subject="Your enquiry", message_id=message_id), folder="Sent")


def test_a_recreated_sent_folder_is_read_again_and_its_outreach_is_not_lost(lead, mailbox):
    watch_sent(lead, mailbox)
    recreate(mailbox, "Sent")
    sent_outreach(mailbox, "<sent-1@example.com>")

    code, out, err = lead.cli("poll")

    assert code == 0 and "sent: 1 added to a lead" in out
    assert show(lead)["status"] == "Attempting"
    (changed,) = [json.loads(line) for line in err.splitlines() if '"uidvalidity_changed"' in line]
    assert changed["mailbox"] == "sent" and changed["old"] != changed["new"] and changed["level"] == "warning"


def test_a_sent_folder_read_again_counts_what_it_had_read_once(lead, mailbox):
    watch_sent(lead, mailbox)
    sent_outreach(mailbox, "<sent-1@example.com>")
    lead.poll()
    recreate(mailbox, "Sent")  # restored from a backup, say: the same message, and one sent since
    sent_outreach(mailbox, "<sent-1@example.com>")
    sent_outreach(mailbox, "<sent-2@example.com>")

    code, out, _ = lead.cli("poll")

    assert code == 0 and "sent: 1 added to a lead, 1 duplicate" in out
    assert [a["kind"] for a in show(lead)["activities"]].count("outreach") == 2
    code, out, err = lead.cli("poll")  # its place is kept under the new UIDVALIDITY
    assert "sent: nothing new" in out and "uidvalidity_changed" not in err


def test_an_empty_recreated_sent_folder_is_reported_once(lead, mailbox):
    watch_sent(lead, mailbox)
    recreate(mailbox, "Sent")

    assert "uidvalidity_changed" in lead.cli("poll")[2]
    assert "uidvalidity_changed" not in lead.cli("poll")[2]
    sent_outreach(mailbox, "<sent-1@example.com>")
    lead.poll()
    assert show(lead)["status"] == "Attempting"


def test_a_sent_folder_is_selected_read_write_and_keeps_its_flags(lead, mailbox):
    """SELECT, not EXAMINE: a server may renumber a folder at every read-only
    open (RFC 3501 forbids EXAMINE to record the UIDs it hands out). The sign
    is \\Recent, which only a read-write open takes; \\Seen stays as it was."""
    watch_sent(lead, mailbox)
    sent_outreach(mailbox, "<sent-1@example.com>")

    lead.poll()

    assert list(mailbox.flags("Sent").values())[-1] == set()


def test_a_sent_mailbox_pointed_at_another_folder_starts_at_its_newest_message(lead, mailbox):
    """Another folder's history is no more outreach than the first one's was:
    a folder this mailbox never read starts at its newest message."""
    watch_sent(lead, mailbox)
    mailbox.append(plain_message("Old, from the other folder", sender="Sales <sales@example.com>",
                                 to="jo@client.test", message_id="<old-archive@example.com>"), folder="Archive")
    lead.configure(mailbox.section(), mailbox.section("sent", folder="Archive", kind="sent", templates=None),
                   extra=PIPELINE)

    code, out, err = lead.cli("poll")

    assert code == 0 and "sent: nothing new" in out and "uidvalidity_changed" not in err
    assert show(lead)["status"] == "New"  # the archive's old mail moved nothing
    (started,) = [json.loads(line) for line in err.splitlines() if '"sent_folder_started"' in line]
    assert started["moved_from"] == "Sent"
    sent_outreach(mailbox, "<sent-new@example.com>")  # into Sent, which it no longer reads
    mailbox.append(plain_message("Hi Jo", sender="Sales <sales@example.com>", to="jo@client.test",
                                 message_id="<archive-new@example.com>"), folder="Archive")
    lead.poll()
    assert show(lead)["status"] == "Attempting"


# --- when automation cannot move a lead, it says so -------------------------------------------


def test_a_reply_that_cannot_move_the_lead_for_a_missing_field_says_so_once_on_the_lead(env, mailbox):
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra=PIPELINE + 'required = ["budget"]\n')
    env.upgrade()
    env.poll()
    outreach(mailbox)
    env.poll()
    answer(mailbox)
    answer(mailbox)  # a second answer says nothing new

    env.poll()

    shown = show(env)
    assert shown["status"] == "Attempting"
    assert shown["blocked"] == "reply received; not moved to Contacted: needs budget"
    blocked = [a for a in shown["activities"] if a["kind"] == "blocked"]
    assert [(a["summary"], a["details"]["by"]) for a in blocked] == [
        ("reply received; not moved to Contacted: needs budget", "automation")]
    assert [t["title"] for t in shown["tasks"]] == ["Call Jo Smith"]

    assert env.cli("leads", "set", "1", "--status", "Contacted", "--field", "budget=5000")[0] == 0

    moved = show(env)
    assert moved["blocked"] is None  # Attempting's call: cancelled as the lead left it
    assert [(t["title"], t["state"]) for t in moved["tasks"]] == [("Call Jo Smith", "cancelled")]
    assert moved["activities"][-1]["summary"] == "1 open task of Attempting cancelled"


def test_a_lead_from_mail_gets_its_first_status_tasks_as_one_entered_by_hand(env, mailbox):
    """The default status's tasks are made when a lead enters it — by mail
    as by `leads add`: the owner's, due from the lead's arrival, titled in
    the sandbox with the lead's fields."""
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test", company="Client"))
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test", subject="Me again"))  # joins lead 1, same batch
    env.configure(mailbox.section(), extra='''
[[statuses]]
name = "New"
tasks = [ { title = "Call {{ lead.name }} at {{ lead.company }}", due = "4h" }, { title = "{{ lead.nope.deeper }}", due = "1d" } ]
''')
    env.upgrade()
    assert env.poll() == 0
    assert env.cli("leads", "add", "--name", "Ona", "--email", "ona@else.test")[0] == 0

    mailed, by_hand = show(env, 1), show(env, 2)
    assert [t["title"] for t in mailed["tasks"]] == ["Call Jo Smith at Client", "{{ lead.nope.deeper }}"]
    assert [t["title"] for t in by_hand["tasks"]] == ["Call Ona at", "{{ lead.nope.deeper }}"]
    created = datetime.fromisoformat(mailed["created_at"])
    assert datetime.fromisoformat(mailed["tasks"][0]["due_at"]) == created + timedelta(hours=4)
    assert [a["kind"] for a in mailed["activities"]][:3] == ["created", "task", "task"]
    assert len(mailed["activities"]) == 4 and mailed["activities"][1]["details"] | {"due_at": None} == {
        "by": "automation", "how": "mail", "due_at": None}
    assert [a["kind"] for a in by_hand["activities"]][-2:] == ["task", "task"]
    owners = {row["id"]: row["owner"] for row in env.leads()}
    assert json.loads(env.cli("tasks", "list", "--format", "json")[1])[0]["owner"] == owners[1] is not None
