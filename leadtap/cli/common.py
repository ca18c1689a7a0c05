"""What the commands share: exit codes, ids, durations and moments as
arguments, and one change made in one transaction (a refusal names the rule,
changes nothing and exits 1). What needs the database is imported where it
runs: building the parser (and ``--help``) loads none of it."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from leadtap.core.errors import LeadtapError
from leadtap.core.rules.durations import parse_seconds

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FORMATS = ["table", "json", "csv"]
MAX_ID = 2**63 - 1


def record_id(text: str) -> int:
    """A lead or task id: a whole number the database can hold."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id") from None
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (1 to {MAX_ID})")
    return value


def positive(text: str) -> int:
    """A count (``--limit``): 1 to a million."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r}: 1 to 1000000 is expected")
    return value


def duration(text: str) -> str:
    try:
        parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def change(app, args, apply, now: datetime | None = None) -> int:
    """One change in one transaction; a refusal rolls it back and exits 1."""
    from sqlalchemy.exc import DBAPIError

    from leadtap.core.rules.words import described
    from leadtap.core.store.engine import describe_db_error, utcnow
    from leadtap.core.use_cases import changes

    db = app.ready_database()
    rules = app.lead_rules()
    now = now or utcnow()
    try:
        with db.transaction() as session:
            actor = changes.acting(session, args.by, rules.pipeline)
            done = apply(session, rules, actor, now)
    except DBAPIError as exc:  # a lock conflict, a value the database refuses: said, not a traceback
        raise LeadtapError(f"the database refused the change: {describe_db_error(exc)}") from None
    done = done if isinstance(done, list) else [done]  # a change, and the move automation made after it
    print(f"lead {done[0].lead_id}: " + described(done))
    if owes_mail(app, done):
        print(app.send_notifications().summary())  # after the commit: the new owner hears at once
    return EXIT_OK


def owes_mail(app, done: list) -> bool:
    """A new owner (of a lead, or of an onboarding) is told at once; a workflow's first steps run."""
    from leadtap.core.rules import deals, lifecycle

    if any(change.of(lifecycle.StepsOwed) for change in done) or owes_webhooks(app, done):
        return True
    if any(change.of(lifecycle.OwnerChanged) or change.of(lifecycle.Created) for change in done):
        return app.config.notifications.enabled
    return any(change.of(deals.OnboardingNeeded) for change in done) and app.config.smtp is not None


def owes_webhooks(app, done: list) -> bool:
    """The change is an event a webhook wants (a note is none): it goes out at once."""
    from leadtap.core.rules.webhooks import events_of

    deals = app.config.opportunities.deals
    return any(hook.wants(event) for change in done for event, _ in events_of(change, deals.won, deals.lost)
               for hook in app.config.webhooks)


def parse_field(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise LeadtapError(f"--field {text!r}: NAME=VALUE is expected")
    return name.strip(), value.strip()


def moment(text: str, now: datetime, zone, what: str) -> datetime:
    """``3d`` from now, or the start of a date in the reminders' timezone."""
    from leadtap.core.rules import reply_grammar

    try:
        return reply_grammar.moment(text, now, zone)
    except ValueError as exc:
        raise LeadtapError(f"{what} {exc}") from None


def refuse_unknown_owner(app, email: str | None) -> bool:
    """True, having said why, when ``--owner`` names nobody leadtap knows,
    listing those it knows (the config's owners and those who had leads before)."""
    from sqlalchemy import select

    from leadtap.core.store.tables import owners

    if email is None:
        return False
    app.db.check_schema()
    with app.db.reading_connection() as connection:
        known = sorted(set(connection.scalars(select(owners.c.email))) | {o.email.lower() for o in app.config.owners})
    if email.strip().lower() in known:
        return False
    print(f"leadtap: unknown owner {email!r}; expected one of {', '.join(known) or '(no owners yet)'}",
          file=sys.stderr)
    return True
