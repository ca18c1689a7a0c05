"""``leadtap webhooks list|retry|test``: the events owed to ``[[webhooks]]``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from leadtap.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, positive, record_id

if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    hooks = subcommands.add_parser("webhooks", help="the events sent to [[webhooks]]: list, retry, test") \
        .add_subparsers(dest="webhooks_command", required=True)
    listing = hooks.add_parser("list", help="the latest deliveries, their attempts and the last answer")
    listing.add_argument("--failed", action="store_true", help="only those given up")
    listing.add_argument("--endpoint", metavar="NAME", help="only those to this [[webhooks]] name")
    listing.add_argument("--lead", type=record_id, metavar="ID", help="only this lead's events")
    listing.add_argument("--limit", type=positive, default=200, metavar="N", help="the latest N (default 200)")
    listing.add_argument("--before", type=record_id, metavar="ID",
                         help="those older than delivery ID (the page after one that ended at ID)")
    listing.set_defaults(handler=cmd_webhooks_list)
    retry = hooks.add_parser("retry", help="a delivery given up (or all of them) owed again, from now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=record_id)
    which.add_argument("--all", action="store_true", help="every delivery given up")
    retry.set_defaults(handler=cmd_webhooks_retry)
    test = hooks.add_parser("test", help="send a signed ping to one endpoint now, and show its answer")
    test.add_argument("name", help="a [[webhooks]] name")
    test.set_defaults(handler=cmd_webhooks_test)


def cmd_webhooks_list(app: App, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from leadtap.core.store.db import WebhookDelivery, WebhookEndpoint

    app.db.check_schema()
    with app.db.transaction() as session:
        rows = list(session.scalars(chosen(args).order_by(WebhookDelivery.id.desc()).limit(args.limit + 1)))
        more = len(rows) > args.limit
        rows = rows[:args.limit]
        unknown = args.endpoint and args.endpoint not in {hook.name for hook in app.config.webhooks} and not \
            session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.endpoint == args.endpoint).limit(1))
        urls = {hook.name: hook.url for hook in app.config.webhooks}
        gone = [e for e in session.scalars(select(WebhookEndpoint)) if urls.get(e.name) == e.url]
    for endpoint in gone:
        print(f"endpoint {endpoint.name} disabled {endpoint.disabled_at:%Y-%m-%d %H:%M} UTC ({endpoint.url}): "
              f"{endpoint.reason}")
    if unknown:  # neither configured nor in the table: a removed endpoint's deliveries still list
        names = ", ".join(urls) or "none configured"
        print(f"leadtap: no deliveries to {args.endpoint!r}; the [[webhooks]] are {names}", file=sys.stderr)
        return EXIT_USAGE
    if not rows:
        print("no webhook deliveries" + (" given up" if args.failed else ""))
    for row in rows:
        when = f"{row.sent_at:%Y-%m-%d %H:%M}" if row.sent_at else f"next {row.next_attempt_at:%Y-%m-%d %H:%M}"
        lead = f"lead {row.lead_id}" if row.lead_id else "ping"
        print(f"{row.id:>6}  {row.endpoint}  {row.event}  {lead}  {row.state}  {row.attempts} attempts  {when}  "
              f"{row.webhook_id}" + (f"  — {row.last_error or row.answer}" if row.state != "sent" and
                                     (row.last_error or row.answer) else ""))
    if more:
        print(f"(the latest {args.limit}; older ones: --before {rows[-1].id})")
    return EXIT_OK


def chosen(args: argparse.Namespace):
    """The deliveries ``webhooks list`` is asked for (newest first, a page at a time)."""
    from sqlalchemy import select

    from leadtap.core.store.db import WebhookDelivery as row

    query = select(row)
    if args.failed:
        query = query.where(row.state == "failed")
    if args.endpoint:
        query = query.where(row.endpoint == args.endpoint)
    if args.lead:
        query = query.where(row.lead_id == args.lead)
    if args.before:
        query = query.where(row.id < args.before)
    return query


def cmd_webhooks_retry(app: App, args: argparse.Namespace) -> int:
    from sqlalchemy import exists, update
    from sqlalchemy.orm import aliased

    from leadtap.core.store.db import WebhookDelivery
    from leadtap.core.store.engine import utcnow

    now = utcnow()
    later = aliased(WebhookDelivery)
    # an event whose lead had a later one delivered since (or being delivered) would bring old news after new
    superseded = exists().where(later.endpoint == WebhookDelivery.endpoint, later.lead_id == WebhookDelivery.lead_id,
                                later.id > WebhookDelivery.id, later.state.in_(("sent", "claimed")))
    with app.ready_database().transaction() as session:
        query = update(WebhookDelivery).where(WebhookDelivery.state == "failed", ~superseded)
        if not args.all:
            query = query.where(WebhookDelivery.id == args.id)
        owed = session.execute(query.values(state="pending", attempts=0, next_attempt_at=now, created_at=now,
                                            token=None, claimed_at=None)).rowcount
    if not owed:
        print("nothing to retry" + ("" if args.all else f": delivery {args.id} is not given up, or its lead's "
                                                         f"later events went out since (it would be old news)"))
        return EXIT_FAILED
    print(f"{owed} deliver{'y' if owed == 1 else 'ies'} owed again (any whose lead's later events went out: "
          f"left as they are)")
    print(app.send_notifications().summary())
    return EXIT_OK


def cmd_webhooks_test(app: App, args: argparse.Namespace) -> int:
    from leadtap.scheduler.webhooks import ping

    hook = next((h for h in app.config.webhooks if h.name == args.name), None)
    if hook is None:
        names = ", ".join(h.name for h in app.config.webhooks) or "none configured"
        print(f"leadtap: unknown webhook {args.name!r}; expected one of {names}")
        return EXIT_USAGE
    state, answer = ping(app, hook)
    print(f"{hook.name} ({hook.url}): {state}, {answer}")
    return EXIT_OK if state == "sent" else EXIT_FAILED
