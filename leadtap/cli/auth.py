"""``leadtap auth status|login|logout``: the OAuth2 sign-ins of the mailboxes
and of SMTP (``auth = "oauth2"``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from leadtap.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.auth.tokens import SignIn
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    auth = subcommands.add_parser("auth", help="OAuth2 sign-ins of the mailboxes and of SMTP")
    auth_commands = auth.add_subparsers(dest="auth_command", required=True)
    status = auth_commands.add_parser("status", help="each sign-in's state: its token, last refresh, last error")
    status.add_argument("--format", choices=["table", "json", "csv"], default="table")
    status.set_defaults(handler=cmd_auth_status)
    login = auth_commands.add_parser("login", help="sign in as a person once (grant = \"refresh_token\")")
    which_sign_in(login)
    login.add_argument("--method", choices=["device", "paste"],
                       help="device: enter a code on any device (Microsoft's default); paste: open an address, "
                            "paste back where the browser went (Google's default)")
    login.set_defaults(handler=cmd_auth_login)
    logout = auth_commands.add_parser("logout", help="forget a sign-in's stored tokens")
    which_sign_in(logout)
    logout.set_defaults(handler=cmd_auth_logout)


def which_sign_in(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--mailbox", metavar="NAME", help="the mailbox's sign-in")
    which.add_argument("--smtp", action="store_true", help="SMTP's sign-in")


def sign_ins(app: App) -> list[SignIn]:
    found = [app.mailbox_sign_in(box) for box in app.config.mailboxes] + [app.smtp_sign_in()]
    return [s for s in found if s is not None]


def chosen(app: App, args: argparse.Namespace) -> SignIn | None:
    if args.smtp:
        found = app.smtp_sign_in()
        if found is None:
            print("leadtap: [smtp] does not sign in with OAuth2 (auth = \"oauth2\")", file=sys.stderr)
        return found
    names = [box.name for box in app.config.mailboxes]
    if args.mailbox not in names:
        print(f"leadtap: no mailbox {args.mailbox!r}; configured: {names}", file=sys.stderr)
        return None
    found = app.mailbox_sign_in(app.config.mailbox(args.mailbox))
    if found is None:
        print(f"leadtap: mailbox {args.mailbox!r} signs in with a password, not OAuth2", file=sys.stderr)
    return found


def cmd_auth_status(app: App, args: argparse.Namespace) -> int:
    from leadtap.auth.state import sign_in_state
    from leadtap.cli.output import write_rows
    from leadtap.core.store import oauth_tokens
    from leadtap.core.store.engine import utcnow

    found = sign_ins(app)
    if not found:
        print("no mailbox and no SMTP server signs in with OAuth2")
        return EXIT_OK
    app.db.check_schema()
    with app.db.transaction() as session:
        rows = {s.name: oauth_tokens.read(session, s.credential) for s in found}
    now, listed = utcnow(), []
    for sign_in in found:
        row = rows[sign_in.name]
        state = sign_in_state(row, sign_in.config.interactive, sign_in.login_command, now)
        listed.append({"sign_in": sign_in.name, "username": sign_in.username, "provider": sign_in.config.provider,
                       "grant": sign_in.config.grant, "state": state.state, "detail": state.detail,
                       "refreshed_at": row.refreshed_at.isoformat(timespec="seconds") if row and row.refreshed_at
                       else None, "refreshes": row.refreshes if row else 0,
                       "signed_in_at": row.signed_in_at.isoformat(timespec="seconds") if row and row.signed_in_at
                       else None})
    if args.format == "table":
        for item in listed:
            last = f"; last refresh {item['refreshed_at']} ({item['refreshes']} in all)" if item["refreshed_at"] else ""
            print(f"{item['sign_in']} as {item['username']} ({item['provider']}, {item['grant']}): "
                  f"{item['state']} — {item['detail']}{last}")
    else:
        write_rows(listed, args.format, sys.stdout, (), "sign-in")
    return EXIT_OK if all(item["state"] == "ok" for item in listed) else EXIT_FAILED


def cmd_auth_login(app: App, args: argparse.Namespace) -> int:
    from leadtap.auth.cipher import TokenCipher
    from leadtap.auth.login import Prompt, sign_in as person_signs_in
    from leadtap.core.errors import OAuth2Error
    from leadtap.core.store import oauth_tokens
    from leadtap.core.store.engine import utcnow
    from datetime import timedelta

    sign_in = chosen(app, args)
    if sign_in is None:
        return EXIT_USAGE
    if not sign_in.config.interactive:
        print(f"leadtap: {sign_in.name} signs in as an app (grant = {sign_in.config.grant!r}): there is no "
              "person to sign in; `leadtap check` proves its sign-in", file=sys.stderr)
        return EXIT_USAGE
    db = app.ready_database()
    cipher = TokenCipher(app.config.oauth2.key.reveal())  # refused before anyone signs in, not after
    prompt = Prompt(say=lambda text: print(text, flush=True), ask=input)
    try:
        grant = person_signs_in(sign_in.config, sign_in.username, prompt, args.method)
    except OAuth2Error as exc:
        print(f"leadtap: {sign_in.name}: sign-in failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if grant.refresh_token is None:
        print(f"leadtap: {sign_in.name}: the provider gave no refresh token (the scope needs offline_access, "
              "or Google's consent was not asked again)", file=sys.stderr)
        return EXIT_FAILED
    credential, now = sign_in.credential, utcnow()
    with db.transaction() as session:
        oauth_tokens.sign_in(session, credential, sign_in.username, sign_in.config.grant,
                             cipher.seal(grant.refresh_token, credential), cipher.seal(grant.access_token, credential),
                             now + timedelta(seconds=grant.expires_in), now)
    sharing = [s.name for s in sign_ins(app) if s.credential == credential and s.name != sign_in.name]
    print(f"{sign_in.name}: signed in as {sign_in.username}; the tokens are stored encrypted"
          + (f" (shared with {', '.join(sharing)})" if sharing else ""))
    return EXIT_OK


def cmd_auth_logout(app: App, args: argparse.Namespace) -> int:
    from leadtap.core.store import oauth_tokens

    sign_in = chosen(app, args)
    if sign_in is None:
        return EXIT_USAGE
    db = app.ready_database()
    with db.transaction() as session:
        forgot = oauth_tokens.forget(session, sign_in.credential)
    sharing = [s.name for s in sign_ins(app) if s.credential == sign_in.credential and s.name != sign_in.name]
    if not forgot:
        print(f"{sign_in.name}: no stored tokens")
        return EXIT_OK
    print(f"{sign_in.name}: tokens forgotten" + (f" (also for {', '.join(sharing)}, which signed in the same way)"
                                                 if sharing else "")
          + ("; sign in again with: " + sign_in.login_command if sign_in.config.interactive else ""))
    return EXIT_OK
