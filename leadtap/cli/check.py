"""``leadtap check``: one line per check — the config, the database, every
active mailbox, every template and task title in use (rendered with the
context it is sent with), the SMTP server and the metrics address."""

from __future__ import annotations

import argparse
from typing import Callable

from leadtap.cli.common import EXIT_FAILED, EXIT_OK
from leadtap.core.errors import ConfigError, LeadtapError, MailSendError, TemplateError
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    subcommands.add_parser("check", help="test the config, the database and every mailbox").set_defaults(
        handler=cmd_check
    )


def cmd_check(app: App, args: argparse.Namespace) -> int:
    checks: list[tuple[str, Callable[[], str]]] = [("config", lambda: str(app.config.path))]
    checks.append(("database", lambda: check_database(app)))
    checks.append(("statuses", lambda: check_statuses(app)))
    checks.append(("senders", lambda: check_senders(app.config)))
    for box in app.config.mailboxes:
        if box.active:
            checks.append((f"mailbox {box.name}", lambda box=box: check_mailbox(app, box)))
    for kind, contexts in template_contexts(app.config).items():
        checks.append((f"template {kind}", lambda kind=kind, contexts=contexts: check_template(app, kind, contexts)))
    for pipeline in app.config.every_pipeline:
        of = f" ({pipeline.name})" if not pipeline.default else ""
        for status, option in pipeline.options.items():
            for number, task in enumerate(option.tasks, start=1):
                checks.append((f"task {number} of {status}{of}", lambda task=task: check_task_title(app, task.title)))
            for number, step in enumerate(option.steps, start=1):
                if step.kind == "task":
                    checks.append((f"step {number} of {status}{of}",
                                   lambda step=step: check_task_title(app, step.title)))
    for stage, steps in app.config.opportunities.deals.steps.items():
        for number, step in enumerate(steps, start=1):
            if step.kind == "task":
                checks.append((f"step {number} of deal stage {stage}",
                               lambda step=step: check_task_title(app, step.title)))
    onboarding = app.config.opportunities.deals.onboarding
    for number, task in enumerate(onboarding.tasks if onboarding else (), start=1):
        checks.append((f"onboarding task {number}", lambda task=task: check_task_title(app, task.title)))
    if app.config.smtp is not None:
        checks.append(("smtp", lambda: check_smtp(app)))
    if app.config.commands.enabled:
        checks.append(("commands", lambda: check_commands(app.config)))
    if app.config.metrics.enabled:
        checks.append(("metrics", lambda: check_metrics(app)))
    for hook in app.config.webhooks:
        checks.append((f"webhook {hook.name}", lambda hook=hook: check_webhook(app, hook)))
    failures = 0
    for name, check in checks:
        try:
            detail = check()
            print(f"ok    {name}: {detail}")
        except LeadtapError as exc:
            failures += 1
            print(f"FAIL  {name}: {exc}")
    return EXIT_FAILED if failures else EXIT_OK


def template_contexts(config) -> dict[str, list[dict]]:
    """Each template in use, with every context it is rendered with: a status
    rule's reminder (an escalation too, a reassignment when the rule
    reassigns), a task rule's, a digest of both, a notification."""
    from leadtap.scheduler.render import sample_context, sample_item, sample_notification, sample_step
    found: dict[str, list[dict]] = {}
    commands = config.commands.enabled
    rules = [rule for rule in config.reminders.rules if rule.enabled]
    for rule in rules:
        task = rule.for_tasks
        variants = [sample_item(task), sample_item(task, escalation=True, reassigned=bool(rule.reassign_after))]
        found.setdefault("digest" if config.reminders.digest else rule.template, []).extend(
            sample_context(variant, commands=commands) for variant in variants)
    if config.reminders.digest and rules:
        found["digest"].append(sample_context(*(sample_item(r.for_tasks) for r in rules), commands=commands))
    if config.notifications.enabled:
        found[config.notifications.new_lead] = [sample_notification(commands=commands)]
    if any(rule.reassign_after for rule in rules):
        found["lead_reassigned"] = [sample_notification(commands=commands)]
    deals = config.opportunities.deals
    if deals.staleness.enabled:
        found["deal_stale"] = [sample_notification("deal_stale", commands)]
        found["deal_closed_stale"] = [sample_notification("deal_closed_stale", commands)]
    if deals.onboarding is not None and config.smtp is not None:
        found[deals.onboarding.template] = [sample_notification("onboarding", commands)]
    if commands:
        found["command_confirmation"] = [sample_notification("confirmation", commands)]
    for step in all_steps(config):
        if step.sends:  # a lead as full as can be, and one with nothing but an address
            found.setdefault(step.template, []).extend(
                sample_step(step.to_contact, commands, bare) for bare in (False, True))
    return found


def all_steps(config) -> list:
    """Every workflow step: the statuses', then the deal stages'."""
    return ([step for pipeline in config.every_pipeline for option in pipeline.options.values()
             for step in option.steps]
            + [step for steps in config.opportunities.deals.steps.values() for step in steps])


def check_template(app: App, kind: str, contexts: list[dict]) -> str:
    from leadtap.scheduler.render import RenderError
    renderer = app.renderer()
    try:
        rendered = [renderer.render(kind, context) for context in contexts][0]
    except RenderError as exc:
        raise TemplateError(str(exc)) from None
    return f"renders ({'text and HTML' if rendered.html is not None else 'text'}): {rendered.subject!r}"


def check_commands(config) -> str:
    """The secret reads and is long enough; replies reach a watched mailbox."""
    from email.utils import parseaddr

    commands = config.commands
    commands.secret.reveal()  # a ConfigError names the key: missing, unreadable or short
    watched = {box.username.lower() for box in config.mailboxes if box.active and box.kind != "sent"}
    address = (commands.address or parseaddr(config.smtp.sender)[1]).lower()
    where = "Reply-To" if commands.address else "no [commands] address: replies go to [smtp] from"
    warnings = []
    if address not in watched:
        warnings.append(f"{where} {address} is not the username of a watched mailbox, so replies may never be read")
    if not commands.authserv_id:
        warnings.append("no authserv_id: a reply's From is taken as written (see \"Acting by email\")")
    if warnings:
        return "secret read; " + "; ".join(f"WARNING: {w}" for w in warnings)
    return f"secret read; replies go to {address}, a watched mailbox; {commands.authserv_id} must pass them"


def check_task_title(app: App, title: str) -> str:
    from leadtap.scheduler.render import RenderError, sample_item
    try:
        return f"renders: {app.renderer().render_title(title, sample_item()['lead'])!r}"
    except RenderError as exc:
        raise TemplateError(str(exc)) from None


def check_webhook(app: App, hook) -> str:
    """The endpoint answers: a HEAD (any HTTP answer will do), or a signed ping (a 2xx is expected)."""
    from leadtap.scheduler.webhooks import head, ping

    hook.secret.reveal()  # a ConfigError names the key: missing, unreadable, not whsec_
    if hook.check == "none":
        return f"its secret reads; {hook.url} not reached (check = \"none\")"
    if hook.check == "ping":
        state, answer = ping(app, hook)
        if state != "sent":
            raise LeadtapError(f"{hook.url}: the ping was not taken: {answer}")
        return f"{hook.url} took a signed ping ({answer})"
    answer = head(hook.url, hook.timeout.total_seconds(), hook.ca_file)
    if answer.status is None:
        raise LeadtapError(f"{hook.url}: {answer}")
    said = "; WARNING: it answers 410 Gone" if answer.status == 410 else ""
    return f"{hook.url} answers (HEAD: HTTP {answer.status}){said}"


def check_smtp(app: App) -> str:
    mailer = app.mailer()
    try:
        with mailer:
            mailer.client = mailer.connect()
            mailer.client.noop()
    except Exception as exc:  # every failure to reach the server is the check's answer
        raise MailSendError(f"{mailer.where()}: {exc}", permanent=False) from None
    smtp = app.config.smtp
    if smtp.oauth2 is not None:
        return f"{mailer.where()} answers; signed in with an OAuth2 token ({smtp.oauth2.mechanism.upper()}) as " \
               f"{smtp.username}"
    return f"{mailer.where()} answers"


def check_metrics(app: App) -> str:
    """The metrics address can be listened on — or a running leadtap serves it already."""
    import socket
    import urllib.request

    host, port = app.config.metrics.host, app.config.metrics.port
    try:
        with socket.create_server((host, port)):
            return f"{host}:{port} is free for leadtap run"
    except OSError as exc:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=3) as answer:
                if b"leadtap_" in answer.read():
                    return f"{host}:{port} serves leadtap's metrics (a worker is running)"
        except OSError:
            pass
        raise ConfigError(app.config.path, "metrics.listen", f"cannot listen on {host}:{port}: "
                                                             f"{exc.strerror or exc}") from None


def check_database(app: App) -> str:
    app.db.check_schema()
    return f"reachable, schema up to date ({app.db.engine.dialect.name})"


def check_senders(config) -> str:
    """What a From address decides — an owner's forward picks the lead's
    owner, a service's mail moves a deal — is vouched for by the receiving
    server only with ``[commands] authserv_id``."""
    if config.commands.authserv_id:
        return f"forwards and services' mail count only when {config.commands.authserv_id} passed their From"
    services = [m.sender for m in config.opportunities.deals.moves if m.on == "mail"]
    said = f"; a mail From {', '.join(services)} moves deals" if services else ""
    return ("warning: a From address is taken as it comes (no [commands] authserv_id): a forged owner's forward "
            f"picks a lead's owner{said}")


def check_statuses(app: App) -> str:
    """Leads in a status the config no longer names: moved by admins only,
    left alone by automation and the reminders; the command that moves them."""
    from sqlalchemy import func, select

    from leadtap.core.store.db import Lead
    from leadtap.core.store.tables import of_pipeline
    pipelines = app.config.every_pipeline
    try:
        app.db.check_schema()
    except LeadtapError:
        return "not checked: the database is not ready (above)"
    with app.db.transaction() as session:
        lost = session.execute(select(Lead.pipeline, func.count()).where(
            Lead.pipeline.is_not(None), Lead.pipeline.not_in([p.key for p in pipelines if p.key is not None]))
            .group_by(Lead.pipeline).order_by(Lead.pipeline)).all()
        stranded = [(pipeline, status, count) for pipeline in pipelines for status, count in session.execute(
            select(Lead.status, func.count()).where(of_pipeline(pipeline.key), Lead.status.not_in(pipeline.statuses))
            .group_by(Lead.status).order_by(Lead.status))]
    if lost:
        said = "; ".join(f"{count} in {name!r}" for name, count in lost)
        raise LeadtapError(f"leads in pipelines no longer configured: {said}; move them with: leadtap leads "
                           f"rename-pipeline {lost[0][0]!r} NEW (NEW one of {', '.join(p.name for p in pipelines)})")
    if stranded:
        pipeline = stranded[0][0]
        said = "; ".join(f"{count} in {status!r}" + (f" ({p.name})" if len(pipelines) > 1 else "")
                         for p, status, count in stranded)
        where = f" --pipeline {pipeline.name!r}" if not pipeline.default else ""
        raise LeadtapError(f"leads in statuses no longer configured: {said}; move them with: leadtap leads "
                           f"rename-status {stranded[0][1]!r} NEW{where} (NEW one of {', '.join(pipeline.statuses)})")
    return "every lead is in a configured status" + (f" of its pipeline ({len(pipelines)})" if len(pipelines) > 1
                                                      else "")


def check_mailbox(app: App, box) -> str:
    """Opened as a pass opens it (a folder that is not there is refused with
    the folders there are); then what push and a sent folder need."""
    with app.open_mailbox(box) as imap:
        unread = len(imap.unseen_uids())
        idle = describe_idle(box, imap.announces("IDLE"))
        sent = imap.sent_folder() if box.is_sent else None
    signed = (f"signed in with an OAuth2 token ({box.oauth2.mechanism.upper()}) as {box.username}"
              if box.oauth2 else f"logged in as {box.username}")
    said = [signed, f"folder {box.folder!r} selected", f"{unread} unread", idle]
    if sent is not None and sent != box.folder:
        said.append(f"WARNING: the server marks {sent!r} as its sent folder (\\Sent), not {box.folder!r}")
    return ", ".join(said)


def describe_idle(box, announced: bool) -> str:
    """Whether new mail comes in at once (IMAP IDLE) or at the poll interval."""
    every = f"polled every {describe_interval(box.poll_interval)}"
    if not announced:
        warning = "WARNING: idle = true, but " if box.idle else ""
        return f"{warning}the server does not announce IDLE: {every}"
    if box.idle is False:
        return f"IDLE announced, not used (idle = false): {every}"
    return "IDLE announced"


def describe_interval(span) -> str:
    from leadtap.scheduler.render import describe_duration

    seconds = span.total_seconds()
    return f"{seconds:g} s" if seconds < 60 else describe_duration(span)
