"""Not every message is a lead: auto-replies, bounces, mailing lists and
leadtap's own mail are recognised from their headers and recorded as
``not_lead`` with the reason."""

from __future__ import annotations

import re

from leadtap.core.rules.model import LEADTAP_HEADER, IncomingMessage

BULK_PRECEDENCE = {"bulk", "junk", "list"}
# What out-of-office answers put first in their subject when they set no
# header to say so (Outlook, Exchange, Gmail's and others' in the usual languages).
OUT_OF_OFFICE_RE = re.compile(
    r"^\s*(automatic reply|auto(matic)?[ -]?reply|autoreply|out of (the )?office( reply| autoreply)?"
    r"|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|absence du bureau"
    r"|respuesta autom[áa]tica|fuera de la oficina|risposta automatica|automatisch antwoord"
    r"|afwezigheidsbericht|automatinis atsakymas|autosvar|automatisk svar|odpowied[źz] automatyczna"
    r"|resposta autom[áa]tica)\s*:", re.IGNORECASE)
BOUNCE_SENDERS = {"mailer-daemon", "postmaster"}


def not_a_lead(message: IncomingMessage) -> str | None:
    """The reason this message is not a lead, or None when it may be one."""
    headers = message.headers
    if LEADTAP_HEADER.lower() in headers:
        return "leadtap's own mail"
    auto = headers.get("auto-submitted", "").strip().lower()
    if auto and auto != "no":
        return f"auto-reply (Auto-Submitted: {auto})"
    if "x-autoreply" in headers or "x-autorespond" in headers:
        return "auto-reply"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence == "auto_reply":
        return "auto-reply (Precedence: auto_reply)"
    if OUT_OF_OFFICE_RE.match(message.subject or ""):
        return f"auto-reply (subject: {message.subject.split(':')[0].strip()})"
    if message.content_type == "multipart/report" or "x-failed-recipients" in headers:
        return "bounce (delivery report)"
    if message.sender and message.sender.email.split("@")[0].lower() in BOUNCE_SENDERS:
        return f"bounce (from {message.sender.email})"
    if message.return_path == "":
        return "bounce (empty return path)"
    if "list-id" in headers:
        return "mailing list"
    if precedence in BULK_PRECEDENCE:
        return f"bulk mail (Precedence: {precedence})"
    return None
