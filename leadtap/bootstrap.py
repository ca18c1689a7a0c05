"""The composition root: the one place where configuration, the database and
the adapters are put together. Nothing else opens an engine or a socket.

Each adapter is imported where it is built: a command loads only what it
uses (``leads list`` no IMAP, SMTP or scheduler; see bench/startup.py)."""

from __future__ import annotations

import os
from email.utils import parseaddr
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from leadtap.core.config.load import Config, MailboxConfig, load_config
from leadtap.core.errors import ConfigError, TemplateError
from leadtap.ingest.extract import BoundTemplate, compile_template

if TYPE_CHECKING:
    from leadtap.auth.tokens import BoundTokens, SignIn, TokenSource
    from leadtap.core.store.engine import Database
    from leadtap.core.use_cases.changes import LeadRules
    from leadtap.core.use_cases.reply_changes import ReplySettings
    from leadtap.ingest.imap import ImapMailbox
    from leadtap.ingest.pipeline import MailboxIngest
    from leadtap.ingest.report import PassReport
    from leadtap.scheduler.mailer import Outage, SmtpMailer
    from leadtap.scheduler.notifications import NotificationSender, SendReport
    from leadtap.scheduler.reminders import ReminderSweep
    from leadtap.scheduler.render import Renderer, ReplyHeaders
    from leadtap.scheduler.webhooks import WebhookSender
    from leadtap.scheduler.workflows import StepRunner

DEFAULT_CONFIG = "leadtap.toml"


def config_path(given: str | None, environ: Mapping[str, str]) -> Path:
    """--config, else $LEADTAP_CONFIG, else ./leadtap.toml."""
    return Path(given or environ.get("LEADTAP_CONFIG") or DEFAULT_CONFIG)


def compile_templates(config: Config) -> dict[str, BoundTemplate]:
    """Compile every extraction template; a bad one is a config error naming it."""
    compiled = {}
    for index, template in enumerate(config.templates):
        try:
            compiled[template.name] = BoundTemplate(template, compile_template(template.name, template.body))
        except TemplateError as exc:
            raise ConfigError(config.path, f"extraction_templates[{index}].body", str(exc)) from None
    return compiled


@dataclass
class App:
    """Everything a command needs, built once."""

    config: Config
    templates: dict[str, BoundTemplate]
    _db: Database | None = None
    _tokens: TokenSource | None = None
    _smtp_outage: Outage | None = None

    @property
    def db(self) -> Database:
        from leadtap.core.store.engine import Database

        if self._db is None:
            self._db = Database(self.config.database.url)
        return self._db

    def use_database(self, db: Database) -> None:
        """Share an open database (a reloaded config keeps the running engine)."""
        self._db = db

    def open_mailbox(self, box: MailboxConfig) -> ImapMailbox:
        from leadtap.ingest.imap import ImapMailbox

        return ImapMailbox(box, timeout=self.config.ingest.timeout, tokens=self.mailbox_tokens(box))

    @property
    def tokens(self) -> TokenSource:
        """Every OAuth2 sign-in's tokens: one source per process, its rows shared by the workers."""
        from leadtap.auth.cipher import TokenCipher
        from leadtap.auth.tokens import TokenSource
        from leadtap.scheduler.leases import worker_name

        if self._tokens is None:
            key = self.config.oauth2.key
            self._tokens = TokenSource(self.db, lambda: TokenCipher(key.reveal()), worker_name())
        return self._tokens

    def mailbox_sign_in(self, box: MailboxConfig) -> SignIn | None:
        from leadtap.auth.tokens import SignIn

        if box.oauth2 is None:
            return None
        return SignIn(f"mailbox {box.name!r}", box.username, box.oauth2, f"leadtap auth login --mailbox {box.name}")

    def smtp_sign_in(self) -> SignIn | None:
        from leadtap.auth.tokens import SignIn

        smtp = self.config.smtp
        if smtp is None or smtp.oauth2 is None:
            return None
        return SignIn("SMTP", smtp.username, smtp.oauth2, "leadtap auth login --smtp")

    def mailbox_tokens(self, box: MailboxConfig) -> BoundTokens | None:
        return self.tokens_of(self.mailbox_sign_in(box))

    def tokens_of(self, sign_in: SignIn | None) -> BoundTokens | None:
        """What an adapter asks for the tokens of ``sign_in`` (None: it signs in with a password)."""
        from leadtap.auth.tokens import BoundTokens

        return BoundTokens(self.tokens, sign_in) if sign_in else None

    def mailbox_ingest(self, name: str, should_stop: Callable[[], bool] = lambda: False,
                       on_progress: Callable[[PassReport], None] | None = None,
                       clock: Callable[[], datetime] | None = None,
                       refusal_said_by_caller: bool = False) -> MailboxIngest:
        """The one place an ingest pass is built — poll, retry, run and IDLE
        alike: the mailbox's templates, the lead rules with their task-title
        renderer, and the reply settings (``[commands]``).
        ``refusal_said_by_caller``: a refused sign-in is not logged by the
        pass (the worker says it once per outage)."""
        from leadtap.core.store.engine import utcnow
        from leadtap.ingest.pipeline import MailboxIngest

        box = self.config.mailbox(name)
        return MailboxIngest(self.config, box, self.db, [self.templates[n] for n in box.templates],
                             self.open_mailbox, clock=clock or utcnow, should_stop=should_stop, rules=self.lead_rules(),
                             on_progress=on_progress, reply_settings=self.reply_settings(),
                             refusal_said_by_caller=refusal_said_by_caller)

    def ingest_mailbox(self, name: str, should_stop: Callable[[], bool] = lambda: False,
                       on_progress: Callable[[PassReport], None] | None = None,
                       refusal_said_by_caller: bool = False) -> PassReport:
        """The ingest port the worker uses: one pass over one mailbox."""
        return self.mailbox_ingest(name, should_stop, on_progress,
                                   refusal_said_by_caller=refusal_said_by_caller).run()

    def ingest_mailboxes(self, names: Iterable[str] | None = None,
                         on_progress: Callable[[PassReport], None] | None = None) -> list[PassReport]:
        """One pass over each active mailbox (or the named ones); one
        mailbox's failure never stops the others."""
        self.ready_database()
        boxes = [b for b in self.config.mailboxes if (b.name in names if names is not None else b.active)]
        return [self.ingest_mailbox(box.name, on_progress=on_progress) for box in boxes]

    def watch_mailbox(self, name: str, on_new_mail: Callable[[], None], should_stop: Callable[[], bool],
                      may_watch: Callable[[], bool], wait: Callable[[float], None],
                      on_state: Callable[[bool], None]) -> None:
        """The push port the worker uses: wait in IDLE on one mailbox until stopped (blocking)."""
        from leadtap.ingest.idle import MailboxWatcher

        box = self.config.mailbox(name)
        MailboxWatcher(box, self.config.ingest.timeout, on_new_mail, should_stop, may_watch, wait, on_state,
                       tokens=self.mailbox_tokens(box)).run()

    def mailer(self) -> SmtpMailer:
        from leadtap.scheduler.mailer import Outage, SmtpMailer

        if self.config.smtp is None:
            raise ConfigError(self.config.path, "smtp", "no [smtp] table: leadtap cannot send email")
        if self._smtp_outage is None:  # one a process: every sender says an outage once
            self._smtp_outage = Outage()
        return SmtpMailer(self.config.smtp, tokens=self.tokens_of(self.smtp_sign_in()), outage=self._smtp_outage)

    @property
    def smtp_down(self) -> bool:
        """True while the SMTP server takes no email, as this process's last send found it."""
        return self._smtp_outage is not None and self._smtp_outage.since is not None

    def renderer(self) -> Renderer:
        from leadtap.scheduler.render import Renderer

        return Renderer(self.config.reminders.templates_dir)

    def lead_rules(self) -> LeadRules:
        """What changing a lead needs: the pipeline, the rotation's role, the
        first opportunity stage, and task titles rendered in the sandbox."""
        from leadtap.core.use_cases.changes import LeadRules
        from leadtap.scheduler.render import RenderError

        renderer = self.renderer()

        def render_title(source: str, lead: dict) -> str:
            try:
                return renderer.render_title(source, lead)
            except RenderError:  # `check` reports it; a task with its title as written beats no task
                return source

        return LeadRules.for_config(self.config, render_title)

    def reply_settings(self) -> ReplySettings | None:
        """What ingest needs to run owners' replies (``[commands]``), or None."""
        from leadtap.core.rules.reply_rules import ReplyPolicy
        from leadtap.core.use_cases.reply_changes import ReplySettings

        commands = self.config.commands
        if not commands.enabled:
            return None
        policy = ReplyPolicy(commands.secret_bytes(), commands.token_max_age, commands.authserv_id,
                             self.config.pipeline.admins, commands.require_dkim_identity,
                             commands.digest_token_max_age,
                             {p.key: p.admins for p in self.config.every_pipeline if p.key is not None})
        addresses = {commands.address, parseaddr(self.config.smtp.sender)[1]}
        return ReplySettings(policy, self.config.reminders.zone, frozenset(a.lower() for a in addresses if a),
                             commands.confirmations_per_hour)

    def reply_headers(self) -> ReplyHeaders | None:
        """What every email needs so that a reply can act on it (``[commands]``), or None."""
        from leadtap.scheduler.render import ReplyHeaders

        commands = self.config.commands
        if not commands.enabled:
            return None
        return ReplyHeaders(commands.secret_bytes(), commands.address, commands.digest_token_max_age)

    def reminder_sweep(self, **kwargs) -> ReminderSweep:
        from leadtap.scheduler.reminders import ReminderSweep

        return ReminderSweep(self.config, self.ready_database(), self.renderer(), self.mailer,
                             rules=self.lead_rules(), reply_headers=self.reply_headers(), **kwargs)

    def notification_sender(self, **kwargs) -> NotificationSender:
        from leadtap.scheduler.notifications import NotificationSender

        return NotificationSender(self.config, self.ready_database(), self.renderer(), self.mailer,
                                  reply_headers=self.reply_headers(), **kwargs)

    def step_runner(self, **kwargs) -> StepRunner:
        from leadtap.scheduler.workflows import StepRunner

        return StepRunner(self.config, self.ready_database(), self.renderer(), self.mailer, self.lead_rules(),
                          reply_headers=self.reply_headers(), **kwargs)

    def send_notifications(self, should_stop: Callable[[], bool] = lambda: False) -> SendReport:
        """The outbox: the workflows' steps due, then what owners are owed
        (no email without an [smtp] table), then the webhooks' events."""
        from leadtap.scheduler.notifications import SendReport

        steps = self.step_runner(should_stop=should_stop).run() if self.config.workflows else None
        report = SendReport() if self.config.smtp is None else self.notification_sender(should_stop=should_stop).run()
        report.steps = steps
        report.webhooks = self.webhook_sender(should_stop=should_stop).run() if self.config.webhooks else None
        return report

    def webhook_sender(self, **kwargs) -> WebhookSender:
        from leadtap.scheduler.webhooks import WebhookSender

        return WebhookSender(self.config, self.ready_database(), **kwargs)

    def ready_database(self) -> Database:
        """The database, checked to be at the newest schema, owners in sync."""
        from sqlalchemy.exc import IntegrityError

        from leadtap.core.store.services import sync_owners

        self.db.check_schema()
        for attempt in range(3):
            try:
                with self.db.transaction() as session:
                    sync_owners(session, self.config)
                break
            except IntegrityError:  # another worker added the same owners just now
                if attempt == 2:
                    raise
        return self.db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


def build_app(config_file: str | None, environ: Mapping[str, str] | None = None) -> App:
    environ = os.environ if environ is None else environ
    config = load_config(config_path(config_file, environ), environ)
    return App(config, compile_templates(config))
