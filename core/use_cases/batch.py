"""A batch of messages becomes leads in a handful of statements.

``LeadBatch`` is used inside the ingest transaction, after the rotation lock:

1. ``load``: the batch's known identities, thread ids, the contacts' earlier
   leads, the owners and the existing ledger rows — one query each;
2. ``add_*``: each message is decided in order, in memory, by the rules of
   ``core.rules.intake`` (a message may join a lead created earlier in the same
   batch); this module only records the decisions;
3. ``write``: new leads (their ids returned), then their opportunities, thread
   ids, activities, identities and ledger rows, one ``executemany`` each, and
   the rotation's new position.

Deciding a message never touches the database, so the whole batch costs the
same few round trips whatever its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from leadtap.core.store.db import (
    Activity,
    Lead,
    LedgerEntry,
    Notification,
    Opportunity,
    Owner,
    Rotation,
    SeenMessage,
    Task,
    ThreadMessage,
    WorkflowStep,
    read_back,
)
from leadtap.core.rules import intake, lifecycle
from leadtap.core.rules.deals import MailFacts, glob
from leadtap.core.rules.free_mail import company_domain, domain_of
from leadtap.core.rules.reply_rules import NotAuthorised, check_authentication
from leadtap.core.rules.model import (Candidate, Forwarded, IncomingMessage, LeadDraft, Outcome, opportunity_title,
                                      present, rotation_pool)
from leadtap.core.store.notifications import NEW_LEAD, new_rows
from leadtap.core.store.services import LeadSettings, MessageRef, Result, clip, clip_all, message_details
from leadtap.core.use_cases.changes import lead_fields
from leadtap.core.use_cases.listing import lead_dict
from leadtap.core.use_cases.webhooks import owe_created
from leadtap.core.use_cases.workflows import step_rows


class NewLead:
    """A lead decided in this batch; its id is known once written."""

    def __init__(self, row: dict):
        self.row = row
        self.id: int | None = None


LeadRef = int | NewLead


def lead_id(lead: LeadRef | None) -> int | None:
    return lead.id if isinstance(lead, NewLead) else lead


@dataclass
class Decided:
    ref: MessageRef
    outcome: Outcome
    lead: LeadRef | None = None
    reason: str | None = None
    error: str | None = None
    message: IncomingMessage | None = None
    attempts_to_add: int = 0

    def result(self) -> Result:
        warnings = self.message.warnings if self.message else ()
        return Result(self.outcome, lead_id=lead_id(self.lead), reason=self.reason, error=self.error,
                      warnings=warnings)


@dataclass
class ContactLeads:
    """A contact's most recent lead, and its most recent open one."""

    latest: tuple[LeadRef, str, int | None] | None = None  # (lead, status, owner id)
    open: LeadRef | None = None


@dataclass
class LeadBatch:
    session: Session
    settings: LeadSettings
    rotation: Rotation
    now: datetime
    render_title: Callable[[str, dict], str] = lambda title, _lead: title  # LeadRules.render_title: in the sandbox
    decided: list[Decided] = field(default_factory=list)
    identities: dict[str, LeadRef | None] = field(default_factory=dict)
    threads: dict[str, LeadRef] = field(default_factory=dict)
    contacts: dict[str, ContactLeads] = field(default_factory=dict)
    companies: dict[str, int | None] = field(default_factory=dict)  # company domain -> its latest open lead's owner
    owners: dict[int, Owner] = field(default_factory=dict)
    ledger: dict[int, tuple[int, int, str]] = field(default_factory=dict)  # uid -> (row id, attempts, outcome)
    activities: list[dict] = field(default_factory=list)
    thread_rows: list[tuple[LeadRef, str]] = field(default_factory=list)
    new_leads: list[NewLead] = field(default_factory=list)
    turns_taken: int = 0
    owner_emails: set[str] = field(default_factory=set)
    # Mail on leads, in order: (lead, outreach | reply | mail, what it was); a new lead's id is known once written.
    touches: list[tuple[LeadRef, str, MailFacts]] = field(default_factory=list)

    # --- 1. load -----------------------------------------------------------

    def load(self, messages: list[IncomingMessage], ledger: dict[int, LedgerEntry]) -> None:
        """``ledger``: the batch's rows, as the caller read them under the lock."""
        session = self.session
        identities = [m.identity for m in messages]
        for identity, known_lead in session.execute(
            select(SeenMessage.identity, SeenMessage.lead_id).where(SeenMessage.identity.in_(identities))
        ):
            self.identities[identity] = known_lead
        thread_ids = sorted({tid for m in messages for tid in m.thread_ids})
        for start in range(0, len(thread_ids), 500):
            for message_id, known_lead in session.execute(
                select(ThreadMessage.message_id, ThreadMessage.lead_id)
                .where(ThreadMessage.message_id.in_(thread_ids[start : start + 500]))
                .order_by(ThreadMessage.lead_id)
            ):
                self.threads.setdefault(message_id, known_lead)
        self.owners = {o.id: o for o in session.scalars(select(Owner))}
        self.owner_emails = {o.email.lower() for o in self.owners.values()}
        self.ledger = {uid: (e.id, e.attempts, e.outcome) for uid, e in ledger.items()}

    def attempts(self, uid: int) -> int:
        """Attempts recorded for ``uid``, counting this batch's."""
        before = self.ledger[uid][1] if uid in self.ledger else 0
        return before + sum(d.attempts_to_add for d in self.decided if d.ref.uid == uid)

    def load_contacts(self, contacts: list[str]) -> None:
        rows = self.session.execute(
            select(Lead.id, Lead.contact, Lead.status, Lead.owner_id)
            .where(Lead.contact.in_(sorted(set(contacts))))
            .order_by(Lead.id)
        )
        for known_lead, contact, status, owner_id in rows:
            self.note_lead(contact, known_lead, status, owner_id)
        if self.settings.company_owner:
            self.load_companies(contacts)

    def load_companies(self, contacts: list[str]) -> None:
        """The owners of the open leads at the contacts' companies (the latest's)."""
        domains = sorted({d for d in (self.company_of(c) for c in contacts) if d})
        for start in range(0, len(domains), 500):
            for domain, owner_id in self.session.execute(
                select(Lead.contact_domain, Lead.owner_id)
                .where(Lead.contact_domain.in_(domains[start : start + 500]),
                       Lead.status.not_in(self.settings.open_statuses_exclude), Lead.owner_id.is_not(None))
                .order_by(Lead.id)
            ):
                self.companies[domain] = owner_id

    def company_of(self, contact: str | None) -> str | None:
        return company_domain(contact, self.settings.free_mail)

    def note_lead(self, contact: str, lead: LeadRef, status: str, owner_id: int | None) -> None:
        entry = self.contacts.setdefault(contact, ContactLeads())
        entry.latest = (lead, status, owner_id)
        if status not in self.settings.open_statuses_exclude:
            entry.open = lead
            company = self.company_of(contact) if self.settings.company_owner else None
            if company and owner_id is not None:
                self.companies[company] = owner_id

    # --- 2. decide ---------------------------------------------------------

    def add_outcome(self, ref: MessageRef, result: Result, message: IncomingMessage | None = None,
                    attempts_to_add: int = 0) -> Decided:
        decided = Decided(ref, result.outcome, result.lead_id, result.reason, result.error, message, attempts_to_add)
        self.decided.append(decided)
        return decided

    def add_lead_message(self, ref: MessageRef, message: IncomingMessage, draft: LeadDraft,
                         forwarded: Forwarded | None = None) -> Decided:
        """A duplicate, outreach, a reply or repeat sender joining a lead, or a
        new lead — as ``core.rules.intake`` decides; this only records it. An
        owner's forward stands for the enquiry inside it (``forwarded``)."""
        match intake.decide(message, draft, self, self.settings.sent_folder, self.settings.assign, forwarded):
            case intake.Duplicate(lead):
                return self.keep(Decided(ref, Outcome.DUPLICATE, lead, "already handled", message=message))
            case intake.Outreach() as outreach:
                return self.keep(self.outreach(ref, message, outreach))
            case intake.AboutContacts() as about:
                return self.keep(self.about_contacts(ref, message, about))
            case intake.Attach(lead, reason, original):
                self.attach(lead, ref, original.message if original else message)
                self.touch(lead, "reply", original.message if original else message)
                decided = Decided(ref, Outcome.ATTACHED, lead, reason, message=message)
            case intake.Create(forwarded=original) as create:
                made = (self.create(ref, original.message, original.draft, create, forwarded_by=message.sender.email)
                        if original else self.create(ref, message, draft, create))
                decided = Decided(ref, Outcome.LEAD, made, message=message)
        self.identities[message.identity] = decided.lead
        return self.keep(decided)

    def outreach(self, ref: MessageRef, message: IncomingMessage, outreach: intake.Outreach) -> Decided:
        """An activity on each open lead the mail is addressed to (its reply
        joins the thread), or not a lead."""
        return self.on_leads(ref, message, outreach.leads, outreach.reason, "outreach", "outreach")

    def about_contacts(self, ref: MessageRef, message: IncomingMessage, about: intake.AboutContacts) -> Decided:
        """A service's mail about open leads' contacts: an activity on each (its deal may move), or not a lead."""
        return self.on_leads(ref, message, about.leads, about.reason, "mail", "a service's mail")

    def on_leads(self, ref: MessageRef, message: IncomingMessage, leads: tuple, nothing: str, trigger: str,
                 reason: str) -> Decided:
        if not leads:
            return Decided(ref, Outcome.NOT_LEAD, None, nothing, message=message)
        for lead in leads:
            self.add_thread_id(lead, message.message_id)
            self.activities.append({"lead": lead, "kind": trigger, "summary": clip(message.subject),
                                    "details": message_details(ref, message)})
            self.touch(lead, trigger, message)
        self.identities[message.identity] = leads[0]
        return Decided(ref, Outcome.ATTACHED, leads[0], reason, message=message)

    # --- what is known (``core.rules.intake.Known``) ----------------------------------

    def seen(self, identity: str) -> tuple[bool, LeadRef | None]:
        return identity in self.identities, self.identities.get(identity)

    def lead_of_thread(self, thread_ids) -> LeadRef | None:
        for thread_id in thread_ids:
            if thread_id in self.threads:
                return self.threads[thread_id]
        return None

    def open_lead(self, contact: str) -> LeadRef | None:
        return self.contacts[contact].open if contact in self.contacts else None

    def earlier_owner(self, contact: str) -> int | None:
        latest = self.contacts[contact].latest if contact in self.contacts else None
        return latest[2] if latest else None

    def is_owner(self, email: str) -> bool:
        return email in self.owner_emails

    def company_owner(self, contact: str) -> int | None:
        company = self.company_of(contact) if self.settings.company_owner else None
        return self.companies.get(company) if company else None

    def owner_id(self, email: str) -> int | None:
        return next((o.id for o in self.owners.values() if o.email.lower() == email), None)

    def is_active_owner(self, owner_id: int) -> bool:
        return owner_id in self.owners and present(self.owners[owner_id], self.now)

    def rotation_pool(self) -> tuple[list[Candidate], int | None]:
        role = self.rotation.role
        pool = rotation_pool(self.owners.values(), role, self.now)
        last = self.owners.get(self.rotation.last_owner_id) if self.rotation.last_owner_id else None
        return pool, last.position if last else None

    def is_service_mail(self, message: IncomingMessage) -> bool:
        sender = message.sender.email.lower() if message.sender else ""
        return bool(sender) and any(glob(pattern, sender) for pattern in self.settings.service_senders)

    def vouched_for(self, message: IncomingMessage) -> bool:
        """With ``[commands] authserv_id``, our receiving server must pass the
        From (DMARC or DKIM) before a service's mail moves a deal or an
        owner's forward picks an owner; without it, the From is taken as is."""
        if self.settings.authserv_id is None:
            return True
        try:
            check_authentication(self.settings.authserv_id, message.auth_results,
                                 message.sender.email.lower() if message.sender else "")
        except NotAuthorised:
            return False
        return True

    def touch(self, lead: LeadRef, trigger: str, message: IncomingMessage) -> None:
        facts = MailFacts(message.sender.email.lower() if message.sender else "", message.subject or "",
                          message.attachments)
        self.touches.append((lead, trigger, facts))

    def touched(self) -> dict[int, list[tuple[str, MailFacts]]]:
        """After ``write``: lead id -> its mail's triggers and what each was, in order."""
        found: dict[int, list[tuple[str, MailFacts]]] = {}
        for lead, trigger, facts in self.touches:
            found.setdefault(lead_id(lead), []).append((trigger, facts))
        return found

    def keep(self, decided: Decided) -> Decided:
        self.decided.append(decided)
        return decided

    def attach(self, lead: LeadRef, ref: MessageRef, message: IncomingMessage) -> None:
        self.add_thread_id(lead, message.message_id)
        kind = "reply" if message.thread_ids else "email"
        self.activities.append({"lead": lead, "kind": kind, "summary": clip(message.subject),
                                "details": message_details(ref, message)})

    def create(self, ref: MessageRef, message: IncomingMessage, draft: LeadDraft, decided: intake.Create,
               forwarded_by: str | None = None) -> NewLead:
        owner_id, how = decided.owner_id, decided.how
        if decided.takes_a_turn:
            self.rotation.last_owner_id = owner_id
            self.turns_taken += 1
        lead = NewLead({
            "name": clip(draft.name, 300), "email": clip(draft.email, 320), "phone": clip(draft.phone, 100),
            "company": clip(draft.company, 300), "message": clip(draft.message), "fields": clip_all(draft.fields),
            "source": self.settings.source, "type": self.settings.lead_type, "status": self.settings.status,
            "pipeline": self.settings.pipeline,
            "status_changed_at": self.now,
            "owner_id": owner_id, "mailbox": ref.mailbox, "contact": clip(draft.contact, 320),
            "contact_domain": domain_of(draft.contact),
            "subject": clip(message.subject, 998), "received_at": message.date or self.now, "created_at": self.now,
            "warnings": [clip(w, 500) for w in message.warnings],
        })
        self.new_leads.append(lead)
        self.add_thread_id(lead, message.message_id)
        owner = self.owners.get(owner_id) if owner_id else None
        details = message_details(ref, message) | {
            "template": draft.template, "owner": owner.email if owner else None, "assigned_by": how,
        } | ({"forwarded_by": forwarded_by.lower()} if forwarded_by else {})
        self.activities.append({"lead": lead, "kind": "created", "summary": clip(message.subject),
                                "details": clip_all(details)})
        if draft.contact:
            self.note_lead(draft.contact, lead, self.settings.status, owner_id)
        return lead

    def add_thread_id(self, lead: LeadRef, message_id: str | None) -> None:
        if message_id:
            self.thread_rows.append((lead, clip(message_id, 998)))
            self.threads.setdefault(message_id, lead)

    # --- 3. write ----------------------------------------------------------

    def write(self) -> list[Decided]:
        session = self.session
        self.write_leads()
        self.write_notifications()
        self.write_steps()
        self.write_tasks()
        deals = self.write_opportunities()
        if self.settings.webhooks and self.new_leads:  # after its deal: the payload carries it
            owe_created(session, self.settings.webhooks, lambda: self.as_shown(deals), self.now)
        rows = [{"lead_id": lead_id(lead), "message_id": mid} for lead, mid in self.thread_rows]
        if rows:
            session.execute(insert(ThreadMessage), rows)
        rows = [{"lead_id": lead_id(a["lead"]), "kind": a["kind"], "at": self.now, "summary": a["summary"] or "",
                 "details": a["details"]} for a in self.activities]
        if rows:
            session.execute(insert(Activity), rows)
        self.write_identities()
        self.write_ledger()
        if self.turns_taken:
            self.rotation.turns += self.turns_taken
        session.flush()
        return self.decided

    def write_leads(self) -> None:
        if not self.new_leads:
            return
        ids = self.session.scalars(
            insert(Lead).returning(Lead.id, sort_by_parameter_order=True), [lead.row for lead in self.new_leads]
        ).all()
        for lead, new_id in zip(self.new_leads, ids, strict=True):
            lead.id = new_id

    def write_notifications(self) -> None:
        """Each new lead's owner is owed the new-lead email, sent after this
        transaction commits (``core.store.notifications``)."""
        if not self.settings.notify_owner:
            return
        owed = [(lead.id, self.owners[lead.row["owner_id"]].email) for lead in self.new_leads if lead.row["owner_id"]]
        if owed:
            self.session.execute(insert(Notification), new_rows(owed, NEW_LEAD, self.now))

    def write_steps(self) -> None:
        """Each new lead entered the default status, and its deal the first
        stage: their workflows' steps are owed, run after this commits."""
        settings, now = self.settings, self.now
        rows = [row for lead in self.new_leads
                for row in step_rows(lead.id, settings.status, settings.steps, now, now)]
        if settings.opportunity_stage is not None:
            rows += [row for lead in self.new_leads
                     for row in step_rows(lead.id, settings.opportunity_stage, settings.stage_steps, now, now, True)]
        if rows:
            self.session.execute(insert(WorkflowStep), rows)

    def write_tasks(self) -> None:
        """Each new lead entered the default status: its tasks, made as for
        a lead entered by hand (the owner's, titles rendered with the lead),
        each an activity right after the lead's ``created``."""
        settings, now = self.settings, self.now
        if not settings.tasks or not self.new_leads:
            return
        rows, said = [], {}
        for lead in self.new_leads:
            seen_as = lead_fields(read_back(Lead, lead.row | {"id": lead.id}))
            for task in settings.tasks:
                title, due_at = clip(self.render_title(task.title, seen_as), 500), now + task.due
                rows.append({"lead_id": lead.id, "owner_id": lead.row["owner_id"], "title": title, "due_at": due_at,
                             "state": "open", "status": settings.status, "created_at": now})
                said.setdefault(id(lead), []).append({"lead": lead, "kind": "task", "summary": title, "details": {
                    "by": lifecycle.AUTOMATION, "how": "mail", "due_at": due_at.isoformat()}})
        self.session.execute(insert(Task), rows)
        self.activities = [each for activity in self.activities for each in
                           (activity, *(said.get(id(activity["lead"]), ()) if activity["kind"] == "created" else ()))]

    def write_opportunities(self) -> dict[int, dict]:
        """Each new lead's deal, if leads come with one: its row, with its id, by lead id."""
        if self.settings.opportunity_stage is None or not self.new_leads:
            return {}
        rows = [self.opportunity_row(lead) for lead in self.new_leads]
        ids = self.session.scalars(insert(Opportunity).returning(Opportunity.id, sort_by_parameter_order=True),
                                   rows).all()
        return {row["lead_id"]: row | {"id": new_id} for row, new_id in zip(rows, ids, strict=True)}

    def as_shown(self, deals: dict[int, dict]) -> dict[int, dict]:
        """Each new lead as ``leads show`` will read it back, made from the
        rows just written rather than read again (what owing its webhook
        events costs a lead); one a later message of the batch joins has
        its activity then, as ``record_mail`` will write it."""
        touched = {id(lead) for lead, _, _ in self.touches}
        return {lead.id: lead_dict(read_back(Lead, lead.row | {"id": lead.id}
                                             | ({"last_activity_at": self.now} if id(lead) in touched else {})),
                                   self.owners.get(lead.row["owner_id"]),
                                   read_back(Opportunity, deals[lead.id]) if lead.id in deals else None)
                for lead in self.new_leads}

    def opportunity_row(self, lead: NewLead) -> dict:
        row = lead.row
        title = opportunity_title(row["company"], row["name"], row["email"], row["subject"])
        return {"lead_id": lead.id, "owner_id": row["owner_id"], "title": clip(title, 500),
                "stage": self.settings.opportunity_stage, "created_at": self.now, "stage_changed_at": self.now,
                "fields": {}}

    def write_identities(self) -> None:
        rows = [
            {"identity": d.message.identity, "lead_id": lead_id(d.lead), "outcome": d.outcome.value,
             "first_seen_at": self.now}
            for d in self.decided
            if d.outcome in (Outcome.LEAD, Outcome.ATTACHED) and d.message is not None
        ]
        if rows:
            self.session.execute(insert(SeenMessage), rows)

    def write_ledger(self) -> None:
        fresh, known = [], []
        for d in self.decided:
            row = self.ledger_row(d)
            if d.ref.uid in self.ledger:
                row_id, attempts, _ = self.ledger[d.ref.uid]
                known.append(row | {"row_id": row_id, "attempts": attempts + d.attempts_to_add})
            else:
                fresh.append(row | {"mailbox": d.ref.mailbox, "uidvalidity": d.ref.uidvalidity, "uid": d.ref.uid,
                                    "attempts": d.attempts_to_add, "created_at": self.now})
        if fresh:
            self.session.execute(insert(LedgerEntry), fresh)
        if known:
            table = LedgerEntry.__table__
            self.session.connection().execute(update(table).where(table.c.id == bindparam("row_id")), known)

    def ledger_row(self, d: Decided) -> dict[str, Any]:
        message = d.message
        return {
            "identity": message.identity if message else None,
            "message_id": clip(message.message_id, 998) if message else None,
            "sender": clip(message.sender.email, 320) if message and message.sender else None,
            "subject": clip(message.subject, 998) if message else None,
            "outcome": d.outcome.value,
            "reason": clip(d.reason, 200),
            "lead_id": lead_id(d.lead),
            "error": clip(d.error),
            "updated_at": self.now,
        }
