"""The per-message decision (``core.rules.intake``), rule by rule: no server, no
clock — what is known is a small in-memory fake."""

from __future__ import annotations

from dataclasses import dataclass, field

from leadtap.core.rules.intake import Attach, Create, Duplicate, Outreach, decide
from leadtap.core.rules.model import Address, Candidate, Forwarded, IncomingMessage, LeadDraft

ANA, BEN, CY = 1, 2, 3


@dataclass
class FakeKnown:
    identities: dict[str, int | None] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)
    open_leads: dict[str, int] = field(default_factory=dict)  # contact -> open lead
    earlier: dict[str, int] = field(default_factory=dict)  # contact -> their latest lead's owner
    owners: dict[str, int] = field(default_factory=lambda: {"ana@example.com": ANA, "ben@example.com": BEN,
                                                            "cy@example.com": CY})
    inactive: set[int] = field(default_factory=set)
    last_position: int | None = None
    companies: dict[str, int] = field(default_factory=dict)  # company domain -> its open lead's owner
    services: set[str] = field(default_factory=set)  # senders whose mail is about contacts (e-signature)
    forged: set[str] = field(default_factory=set)  # senders the receiving server did not pass

    def seen(self, identity):
        return identity in self.identities, self.identities.get(identity)

    def lead_of_thread(self, thread_ids):
        return next((self.threads[t] for t in thread_ids if t in self.threads), None)

    def open_lead(self, contact):
        return self.open_leads.get(contact)

    def earlier_owner(self, contact):
        return self.earlier.get(contact)

    def is_owner(self, email):
        return email in self.owners

    def is_active_owner(self, owner_id):
        return owner_id not in self.inactive

    def owner_id(self, email):
        return self.owners.get(email)

    def company_owner(self, contact):
        return self.companies.get(contact.rsplit("@", 1)[1])

    def is_service_mail(self, message):
        return message.sender.email in self.services

    def vouched_for(self, message):
        return message.sender.email not in self.forged

    def rotation_pool(self):
        pool = [Candidate(i, i) for i in self.owners.values() if i not in self.inactive]
        return pool, self.last_position


def message(sender: str = "jo@client.test", identity: str = "id-1", in_reply_to: tuple[str, ...] = (),
            recipients: tuple[str, ...] = ("sales@example.com",)) -> IncomingMessage:
    return IncomingMessage(identity=identity, message_id="<m@x>", sender=Address("", sender), reply_to=None,
                           subject="Hello", date=None, text="Hi", in_reply_to=in_reply_to, recipients=recipients)


def draft(email: str | None = "jo@client.test") -> LeadDraft:
    return LeadDraft("Jo", email, None, None, "Hi", {}, None)


def test_a_message_seen_before_is_a_duplicate_of_its_lead():
    known = FakeKnown(identities={"id-1": 7})
    assert decide(message(), draft(), known, sent_folder=False, assign=True) == Duplicate(7)


def test_an_owners_mail_is_outreach_on_the_open_leads_it_names_in_address_order():
    known = FakeKnown(open_leads={"jo@client.test": 7, "kim@client.test": 8})
    mail = message(sender="ana@example.com", recipients=("kim@client.test", "x@y.test", "jo@client.test",
                                                         "kim@client.test"))
    assert decide(mail, draft(None), known, False, True) == Outreach((8, 7), "from an owner")


def test_an_owners_mail_to_nobody_we_know_is_no_lead_even_from_an_inactive_owner():
    known = FakeKnown(inactive={BEN})
    decision = decide(message(sender="ben@example.com", recipients=("friend@x.test",)), draft(), known, False, True)
    assert decision == Outreach((), "from an owner")


def test_in_a_sent_folder_anyones_mail_is_outreach_and_never_a_lead():
    known = FakeKnown(open_leads={"jo@client.test": 7})
    sent = message(sender="sales@example.com", recipients=("jo@client.test",))
    assert decide(sent, draft(None), known, sent_folder=True, assign=True) == Outreach((7,), "sent to no open lead")
    other = message(sender="sales@example.com", recipients=("new@client.test",))
    assert decide(other, draft("new@client.test"), known, True, True) == Outreach((), "sent to no open lead")


def test_a_reply_in_a_leads_thread_joins_that_lead_before_the_contacts_open_one():
    known = FakeKnown(threads={"<a@x>": 5}, open_leads={"jo@client.test": 9})
    assert decide(message(in_reply_to=("<a@x>",)), draft(), known, False, True) == Attach(5, "reply")


def test_the_contact_of_an_open_lead_writing_again_joins_it():
    known = FakeKnown(open_leads={"jo@client.test": 9})
    assert decide(message(), draft(), known, False, True) == Attach(9, "repeat sender")


def test_a_new_lead_follows_the_contacts_earlier_owner_when_still_active_and_takes_no_turn():
    decision = decide(message(), draft(), FakeKnown(earlier={"jo@client.test": BEN}), False, True)
    assert decision == Create(BEN, "follows contact") and not decision.takes_a_turn


def test_an_inactive_earlier_owner_gives_way_to_the_rotation():
    known = FakeKnown(earlier={"jo@client.test": BEN}, inactive={BEN}, last_position=ANA)
    decision = decide(message(), draft(), known, False, True)
    assert decision == Create(CY, "round-robin") and decision.takes_a_turn


def test_without_an_active_owner_or_with_assignment_off_the_lead_has_no_owner():
    nobody = FakeKnown(owners={})
    assert decide(message(), draft(), nobody, False, True) == Create(None, "no active owner holds the role")
    assert decide(message(), draft(), FakeKnown(), False, assign=False) == Create(None, "assignment disabled")


# --- one definition of each concept --------------------------------------------------

def test_one_email_pattern_takes_any_scripts_letters_and_refuses_what_is_no_address():
    from leadtap.core.rules.model import valid_email

    assert valid_email("ana@example.com") and valid_email("žydrūnė@pavyzdys.lt") and valid_email("a.b+c@x-y.co.uk")
    assert not valid_email("ana@example") and not valid_email("a b@example.com") and not valid_email("<a@b.c>")
    assert not valid_email("ana@@example.com") and not valid_email("ana@example.com, ben@example.com")


def test_a_deal_is_titled_the_same_way_at_ingest_and_by_hand():
    from leadtap.core.rules.model import opportunity_title

    assert opportunity_title("ACME", "Jo", "jo@acme.test", "Quote, please") == "ACME — Quote, please"
    assert opportunity_title(None, None, "jo@acme.test", None) == "jo@acme.test"
    assert opportunity_title(None, None, None, "") == "Lead"


def test_the_rotation_pool_is_the_roles_active_owners_not_away_less_the_one_left_out():
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from leadtap.core.rules.model import Candidate, rotation_pool

    now = datetime(2026, 12, 14, 9, 0, tzinfo=timezone.utc)

    def Row(away_since=None, away_until=None, **kw):
        return SimpleNamespace(away_since=away_since, away_until=away_until, **kw)

    owners = [Row(id=1, position=0, active=True, roles=["sales"], email="ana@x.test"),
              Row(id=2, position=1, active=False, roles=["sales"], email="ben@x.test"),
              Row(id=3, position=2, active=True, roles=["support"], email="cy@x.test"),
              Row(id=4, position=3, active=True, roles=["sales", "support"], email="di@x.test"),
              Row(id=5, position=4, active=True, roles=["sales"], email="ed@x.test", away_since=now - timedelta(days=1),
                  away_until=now + timedelta(days=6)),
              Row(id=6, position=5, active=True, roles=["sales"], email="fi@x.test", away_since=now - timedelta(days=9),
                  away_until=now),  # back this morning
              Row(id=7, position=6, active=True, roles=["sales"], email="gu@x.test", away_since=now - timedelta(days=1)),
              Row(id=8, position=7, active=True, roles=["sales"], email="ho@x.test", away_since=now + timedelta(days=1))]
    assert rotation_pool(owners, "sales", now) == [Candidate(1, 0), Candidate(4, 3), Candidate(6, 5), Candidate(8, 7)]
    assert rotation_pool(owners, "sales", now, exclude="ana@x.test") == [Candidate(4, 3), Candidate(6, 5),
                                                                        Candidate(8, 7)]


def test_only_a_printable_ascii_message_id_goes_into_leadtaps_own_headers():
    from leadtap.core.rules.model import safe_message_id

    assert safe_message_id("<a.b@example.com>") == "<a.b@example.com>"
    assert safe_message_id("<a b@example.com>") is None and safe_message_id("<ž@example.com>") is None
    assert safe_message_id("<a@b>\r\nBcc: x@evil.test") is None and safe_message_id(None) is None


# --- an owner's forward of an enquiry -------------------------------------------------------


def forwarded(sender: str = "jo@client.test") -> Forwarded:
    return Forwarded(message(sender, identity="id-1/forwarded"), draft(sender))


def forward(**kw) -> IncomingMessage:
    return message("ben@example.com", identity="fwd-1", **kw)


def test_an_owners_forward_of_an_enquiry_is_a_lead_from_its_sender_owned_by_the_forwarder():
    decided = decide(forward(), draft("ben@example.com"), FakeKnown(), sent_folder=False, assign=True,
                     forwarded=forwarded())

    assert decided == Create(BEN, "forwarded by its owner", forwarded())


def test_a_forward_of_a_contact_with_an_open_lead_joins_it():
    decided = decide(forward(), draft("ben@example.com"), FakeKnown(open_leads={"jo@client.test": 4}),
                     sent_folder=False, assign=True, forwarded=forwarded())

    assert decided == Attach(4, "forwarded", forwarded())


def test_a_forward_by_an_inactive_owner_goes_to_the_rotation():
    decided = decide(forward(), draft("ben@example.com"), FakeKnown(inactive={BEN}, last_position=ANA),
                     sent_folder=False, assign=True, forwarded=forwarded())

    assert (decided.owner_id, decided.how, decided.forwarded) == (CY, "round-robin", forwarded())


def test_a_reply_to_the_contact_or_a_forward_of_a_colleagues_mail_is_outreach_not_a_lead():
    to_jo = decide(forward(recipients=("jo@client.test",)), draft("ben@example.com"),
                   FakeKnown(open_leads={"jo@client.test": 4}), sent_folder=False, assign=True, forwarded=forwarded())
    colleague = decide(forward(), draft("ben@example.com"), FakeKnown(), sent_folder=False, assign=True,
                       forwarded=forwarded("ana@example.com"))

    assert to_jo == Outreach((4,), "from an owner")
    assert colleague == Outreach((), "from an owner")


def test_a_forward_whose_enquiry_was_seen_is_its_duplicate():
    decided = decide(forward(), draft("ben@example.com"), FakeKnown(identities={"id-1/forwarded": 9}),
                     sent_folder=False, assign=True, forwarded=forwarded())

    assert decided == Duplicate(9)


def test_a_contacts_own_message_with_a_forward_inside_is_their_mail():
    decided = decide(message(), draft(), FakeKnown(), sent_folder=False, assign=True,
                     forwarded=forwarded("someone@else.test"))

    assert isinstance(decided, Create) and decided.forwarded is None


def test_a_new_contact_at_a_company_with_an_open_lead_goes_to_its_owner_without_a_turn():
    known = FakeKnown(companies={"client.test": BEN})
    assert decide(message(), draft(), known, sent_folder=False, assign=True) == Create(BEN, "follows company")
    known.inactive.add(BEN)
    assert decide(message(), draft(), known, sent_folder=False, assign=True).how == "round-robin"
    earlier = FakeKnown(companies={"client.test": BEN}, earlier={"jo@client.test": CY})
    assert decide(message(), draft(), earlier, sent_folder=False, assign=True) == Create(CY, "follows contact")


def test_a_free_mail_domain_names_no_company():
    from leadtap.core.rules.free_mail import company_domain

    assert company_domain("jo@Client.Test") == "client.test"
    assert company_domain("jo@gmail.com") is None and company_domain("jo@web.de") is None
    assert company_domain("jo@client.test", frozenset({"client.test"})) is None
    assert company_domain(None) is None and company_domain("no-at-sign") is None


def test_a_services_mail_to_open_leads_contacts_is_about_them_never_a_lead():
    from leadtap.core.rules.intake import AboutContacts

    known = FakeKnown(open_leads={"jo@client.test": 4}, services={"dse@docusign.net"})
    signed = message("dse@docusign.net", recipients=("jo@client.test", "sales@example.com"))
    elsewhere = message("dse@docusign.net", recipients=("someone@else.test",))

    assert decide(signed, draft("dse@docusign.net"), known, sent_folder=False, assign=True) == AboutContacts(
        (4,), "a service's mail about no open lead")
    assert decide(elsewhere, draft("dse@docusign.net"), known, sent_folder=False, assign=True).leads == ()
    assert isinstance(decide(signed, draft("dse@docusign.net"), FakeKnown(open_leads={"jo@client.test": 4}),
                             sent_folder=False, assign=True), Create)  # not a service: its mail is a lead


def test_a_forged_forward_or_service_mail_is_ordinary_mail():
    from leadtap.core.rules.intake import AboutContacts

    forged = FakeKnown(forged={"ben@example.com", "dse@docusign.net"}, services={"dse@docusign.net"},
                       open_leads={"jo@client.test": 4})
    assert decide(forward(), draft("ben@example.com"), forged, sent_folder=False, assign=True,
                  forwarded=forwarded()) == Outreach((), "from an owner")
    signed = message("dse@docusign.net", recipients=("jo@client.test",))
    assert not isinstance(decide(signed, draft("dse@docusign.net"), forged, sent_folder=False, assign=True),
                          AboutContacts)


def test_an_owners_mail_to_a_contact_carrying_someone_elses_message_is_outreach():
    to_jo = forward(recipients=("jo@client.test", "sales@example.com"))

    assert decide(to_jo, draft("ben@example.com"), FakeKnown(open_leads={"jo@client.test": 4}), sent_folder=False,
                  assign=True, forwarded=forwarded("orders@vendor.test")) == Outreach((4,), "from an owner")
