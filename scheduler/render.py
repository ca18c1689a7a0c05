"""Reminder emails: one renderer per kind (subject, text, optional HTML), in a
sandboxed Jinja2 environment where an undefined name is an error and HTML is
auto-escaped — a lead's name is untrusted input from an email."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid, parseaddr

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from leadtap import TEMPLATES
from leadtap.core.rules import tokens
from leadtap.core.rules.model import LEADTAP_HEADER

SHIPPED = TEMPLATES
SAMPLE_LEAD = {
    "id": 1, "name": "Sample Lead", "email": "sample@client.example", "phone": "+1 555 0100",
    "company": "Sample Co", "message": "A sample enquiry.", "fields": {}, "source": "Email", "type": None,
    "status": "New", "pipeline": None,
    "status_changed_at": "2026-01-01T09:00:00+00:00", "owner": "owner@example.com", "owner_name": "Owner",
    "opportunity": None, "mailbox": "sales", "subject": "Sample", "received_at": "2026-01-01T09:00:00+00:00",
    "created_at": "2026-01-01T09:00:00+00:00", "warnings": [], "last_activity_at": None, "snoozed_until": None,
    "follow_up_of": None, "blocked": "reply received; not moved to Contacted: needs phone",
}


def sample_item(task: bool = False, escalation: bool = False, reassigned: bool = False) -> dict:
    """One reminder as a template sees it: a status rule's (``task`` None) or
    a task rule's; an escalation; a lead the ladder just reassigned."""
    return {
        "lead": dict(SAMPLE_LEAD),
        "owner": {"email": "owner@example.com", "name": "Owner"},
        "rule": {"name": "sample", "status": None if task else "New", "after": "2 days"},
        "stale_for": "3 days",
        "number": 1,
        "escalation": escalation,
        "lead_url": "https://crm.example.com/leads/1",
        "task": {"id": 1, "title": "Call Sample Lead", "due_at": "2026-01-02T09:00:00+00:00", "number": 1}
        if task else None,
        "reassigned_to": {"email": "next@example.com", "name": "Next Owner"} if reassigned else None,
    }


def sample_context(*items: dict, commands: bool = False) -> dict:
    """A reminder letter's context, for `leadtap check`: the first item's keys
    at the top, all of them in ``items`` (a digest)."""
    items = items or (sample_item(),)
    return {**items[0], "recipient": {"email": "owner@example.com", "name": "Owner"}, "items": list(items),
            "now": "2026-01-04T09:00:00+00:00", "commands": commands}


SAMPLE_DEAL = {
    "id": 7, "lead_id": 1, "title": "Example Ltd", "stage": "Proposal", "amount": "12000", "close_date": "2026-12-15",
    "fields": {"amount": "12000", "close_date": "2026-12-15"}, "created_at": "2026-10-01T09:00:00+00:00",
    "stage_changed_at": "2026-11-01T09:00:00+00:00", "closed_at": None, "lost_reason": None,
    "warned_for": "2026-11-22T09:00:00+00:00", "lead": "Jane Doe", "owner": "owner@example.com",
    "closes_at": "2026-11-22T09:00:00+00:00", "limit": "in Proposal for 21d",
}
SAMPLE_ONBOARDING = {"id": 3, "state": "open", "created_at": "2026-11-20T09:00:00+00:00", "tasks": [
    {"id": 11, "title": "Kick-off call", "due_at": "2026-11-27T09:00:00+00:00", "state": "open"},
    {"id": 12, "title": "Onboarding complete", "due_at": "2026-12-20T09:00:00+00:00", "state": "open"}]}


SAMPLE_REPLY = {"subject": "Re: Lead #1 is yours", "re_subject": "Re: Lead #1 is yours", "sender": "owner@example.com", "digest": False, "applied": 1,
                "refused": 1, "help": "/status STATUS   move the lead", "results": [
                    {"line": "/status Contacted", "applied": True, "words": "New → Contacted", "lead_id": 1},
                    {"line": "/stage Won", "applied": False, "words": "deal 7: Won needs amount", "lead_id": 1}]}


def sample_notification(kind: str = "new_lead", commands: bool = False) -> dict:
    """A notification's context, as the sender builds it: a deal's kinds
    (``deal_stale``, ``deal_closed_stale``, ``onboarding``) have their deal."""
    deal = dict(SAMPLE_DEAL)
    if kind == "deal_closed_stale":
        deal.update(stage="Lost", lost_reason="Stale", closed_at="2026-11-22T09:00:00+00:00", closes_at=None,
                    limit=None, warned_for=None)
    if kind == "onboarding":
        deal.update(stage="Won", closed_at="2026-11-20T09:00:00+00:00", closes_at=None, limit=None)
    deal_kind = kind in ("deal_stale", "deal_closed_stale", "onboarding", "confirmation")
    return {"lead": dict(SAMPLE_LEAD), "recipient": {"email": "owner@example.com", "name": "Owner"},
            "owner": {"email": "next@example.com", "name": "Next Owner"}, "lead_url": "https://crm.example.com/leads/1",
            "deal": deal if deal_kind else None, "onboarding": SAMPLE_ONBOARDING if kind == "onboarding" else None,
            "tasks": [{"number": 1, "id": 11, "title": "Call Jane", "due_at": "2026-11-25T09:00:00+00:00"}],
            "reply": SAMPLE_REPLY if kind == "confirmation" else None, "commands": commands}


def sample_step(to_contact: bool = False, commands: bool = False, bare: bool = False) -> dict:
    """A workflow email's context, as ``scheduler.workflows`` builds it;
    ``bare``: a lead with no name, company, owner, deal or task, entered by hand."""
    lead = {**SAMPLE_LEAD, "name": None, "company": None, "owner": None, "owner_name": None} if bare else SAMPLE_LEAD
    return {"lead": dict(lead), "owner": None if bare else {"email": "owner@example.com", "name": "Owner"},
            "deal": None if bare else dict(SAMPLE_DEAL), "lead_url": None if bare else "https://crm.example.com/leads/1",
            "reply_subject": "" if bare else "Re: Sample", "by_mail": not bare,
            "tasks": [] if bare else [{"number": 1, "id": 11, "title": "Call Jane", "due_at": "2026-11-25T09:00:00+00:00"}],
            "recipient": ({"email": "sample@client.example", "name": lead["name"]} if to_contact
                          else {"email": "owner@example.com", "name": None if bare else "Owner"}),
            "commands": commands and not to_contact}


class RenderError(Exception):
    """A template is missing or fails to render; names the template."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def said(value):
    """What ``{{ … }}`` prints: nothing for a field a lead does not have
    (``Call {{ lead.name }} at {{ lead.company }}`` reads ``Call Ona at``, not ``at None``)."""
    return "" if value is None else value


class Renderer:
    def __init__(self, templates_dir: str | None = None):
        loaders = [FileSystemLoader(templates_dir)] if templates_dir else []
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders + [FileSystemLoader(str(SHIPPED))]),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            keep_trailing_newline=False,
            finalize=said,
        )
        self.titles: dict = {}  # task title templates, compiled

    def render(self, kind: str, context: dict) -> Rendered:
        subject = self.render_one(f"{kind}.subject.j2", context)
        text = self.render_one(f"{kind}.txt.j2", context)
        try:
            html = self.render_one(f"{kind}.html.j2", context)
        except TemplateNotFound:
            html = None
        return Rendered(one_line(subject), text, html)

    def render_title(self, source: str, lead: dict) -> str:
        """A task title from its template (``Call {{ lead.name }}``), on one line."""
        try:
            template = self.titles.get(source)
            if template is None:  # compiled once: a sweep of workflow tasks renders the same title thousands of times
                template = self.titles[source] = self.env.from_string(source)
            return one_line(template.render({"lead": lead}))
        except TemplateError as exc:
            raise RenderError(f"task title {source!r}: {exc.message or exc}") from None
        except Exception as exc:  # a title's expression fails on this lead (None + "text")
            raise RenderError(f"task title {source!r}: {type(exc).__name__}: {exc}") from None

    def render_one(self, name: str, context: dict) -> str:
        try:
            return self.env.get_template(name).render(context)
        except TemplateNotFound:
            if name.endswith(".html.j2"):
                raise
            raise RenderError(f"template {name} not found") from None
        except TemplateError as exc:
            where = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
            raise RenderError(f"template {name}{where}: {exc.message or exc}") from None


def one_line(text: str) -> str:
    """Header values built from lead data carry no line break of any kind —
    nothing ``str.splitlines`` would split on, no control character — so they
    cannot end the header block or add a header (injection)."""
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]+", " ", text).strip()


def describe_duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours and days < 3 else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{minutes} min"


@dataclass(frozen=True)
class ReplyHeaders:
    """What lets an owner answer a leadtap email with commands
    (``[commands]``): a token in its Message-ID, issued to its one recipient
    about its lead (None: a digest), and the commands address as Reply-To."""

    secret: bytes
    address: str | None = None
    digest_max_age: timedelta = timedelta(days=7)  # how long a digest's leads are kept for its replies

    def apply(self, message: Message, recipient: str, now: datetime, lead_id: int | None) -> Message:
        domain = parseaddr(message["From"])[1].rpartition("@")[2] or "leadtap.invalid"
        message.replace_header("Message-ID", tokens.message_id(self.secret, recipient, now, domain, lead_id))
        if self.address:
            message["Reply-To"] = self.address
        return message


def compose(rendered: Rendered, sender: str, recipients: list[str], now: datetime, kind: str) -> Message:
    """The email: multipart/alternative when there is HTML; marked as leadtap's
    own, automatic mail so that no watched mailbox turns it into a lead.

    Built with the compat32 classes, which take header values as given instead
    of parsing each one (several times faster for a sweep of thousands); the
    one header made of lead data, the subject, has no line break
    (``one_line``) and is RFC 2047-encoded when it is not ASCII."""
    text = MIMEText(rendered.text, "plain", "utf-8")
    if rendered.html is None:
        message: Message = text
    else:
        message = MIMEMultipart("alternative")
        message.attach(text)
        message.attach(MIMEText(rendered.html, "html", "utf-8"))
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = header_value(one_line(rendered.subject))
    message["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "leadtap.invalid"
    message["Message-ID"] = make_msgid(idstring="leadtap", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message[LEADTAP_HEADER] = kind
    return message


def header_value(text: str) -> str | Header:
    return text if text.isascii() else Header(text, "utf-8")
