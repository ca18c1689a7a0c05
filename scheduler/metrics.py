"""Prometheus metrics of ``leadtap run`` (``[metrics] listen``), with the
``prometheus_client`` library, on a registry of the worker's own: what the
passes, sweeps and sends report, what the IDLE watchers and the leases know,
and what the database says is failed or set aside."""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from leadtap.core.rules.model import Outcome

POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
POST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("leadtap_messages", "Messages handled, by mailbox and outcome",
                                ["mailbox", "outcome"], registry=r)
        self.leads = Counter("leadtap_leads_created", "Leads created from mail", ["mailbox"], registry=r)
        self.poll_seconds = Histogram("leadtap_poll_duration_seconds", "One pass over one mailbox", ["mailbox"],
                                      buckets=POLL_BUCKETS, registry=r)
        self.last_poll = Gauge("leadtap_last_successful_poll_timestamp_seconds",
                               "When the mailbox was last polled without error (Unix time)", ["mailbox"], registry=r)
        self.poll_errors = Counter("leadtap_poll_errors", "Passes that could not poll the mailbox", ["mailbox"],
                                   registry=r)
        self.waiting = Gauge("leadtap_messages_waiting", "Messages of the pass under way not yet handled",
                             ["mailbox"], registry=r)
        self.failed = Gauge("leadtap_messages_failed", "Messages failed and waiting for another attempt",
                            ["mailbox"], registry=r)
        self.set_aside = Gauge("leadtap_messages_set_aside", "Messages set aside after their last attempt",
                               ["mailbox"], registry=r)
        self.reminders = Counter("leadtap_reminders", "Reminders, by result (sent, refused, retried)", ["result"],
                                 registry=r)
        self.reassigned = Counter("leadtap_leads_reassigned", "Leads the reminder ladder gave to the next owner",
                                  registry=r)
        self.deals = Counter("leadtap_deals_stale", "Deals the staleness policy warned of or closed, by action",
                             ["action"], registry=r)
        self.steps = Counter("leadtap_workflow_steps", "Workflow steps, by result (done, sent, refused, retried, "
                             "dropped)", ["result"], registry=r)
        self.notifications = Counter("leadtap_notifications", "Owner emails, by result (sent, refused, retried, "
                                     "dropped)", ["result"], registry=r)
        self.webhooks = Counter("leadtap_webhook_deliveries", "Webhook deliveries, by endpoint and outcome "
                                "(delivered, retried, given_up, gone)", ["endpoint", "outcome"], registry=r)
        self.webhook_seconds = Histogram("leadtap_webhook_duration_seconds", "One POST to an endpoint, its answer read",
                                         ["endpoint"], buckets=POST_BUCKETS, registry=r)
        self.webhook_waiting = Gauge("leadtap_webhook_oldest_undelivered_seconds",
                                     "Age of the oldest webhook event not yet delivered (0: none)", registry=r)
        self.idle = Gauge("leadtap_idle_connected", "1 while the mailbox's IDLE connection is up", ["mailbox"],
                          registry=r)
        self.auth_ok = Gauge("leadtap_mailbox_auth_ok", "0 while the mailbox's sign-in is refused (a person must act)",
                             ["mailbox"], registry=r)
        self.lease = Gauge("leadtap_lease_held", "1 while this worker serves the mailbox", ["mailbox"], registry=r)
        self.smtp_ok = Gauge("leadtap_smtp_ok", "0 while the SMTP server takes no email (down, or our sign-in "
                             "refused)", registry=r)
        self.smtp_ok.set(1)

    def serve(self, host: str, port: int) -> None:
        """The /metrics endpoint, in a thread of its own."""
        start_http_server(port, addr=host, registry=self.registry)

    # --- what the reports say ---------------------------------------------------------

    def poll(self, report) -> None:
        """An ingest pass (``PassReport``)."""
        mailbox = report.mailbox
        self.poll_seconds.labels(mailbox).observe(report.seconds)
        self.waiting.labels(mailbox).set(0)
        if report.error:
            self.poll_errors.labels(mailbox).inc()
        else:
            self.last_poll.labels(mailbox).set_to_current_time()
        if report.sign_in_refused or not report.error:  # a server out of reach says nothing of the sign-in
            self.auth_ok.labels(mailbox).set(0 if report.sign_in_refused else 1)
        for outcome in Outcome:  # what a pass did before it stopped counts too
            if report.counts[outcome]:
                self.messages.labels(mailbox, outcome.value).inc(report.counts[outcome])
        self.leads.labels(mailbox).inc(report.counts[Outcome.LEAD])

    def progress(self, report) -> None:
        self.waiting.labels(report.mailbox).set(max(report.total - report.done, 0))

    def sweep(self, report) -> None:
        """A reminder sweep (``SweepReport``)."""
        self.reminders.labels("sent").inc(report.sent)
        self.reminders.labels("refused").inc(report.refused)
        self.reminders.labels("retried").inc(report.released)
        self.reassigned.inc(report.reassigned)
        self.deals.labels("warned").inc(report.deals.warned)
        self.deals.labels("closed").inc(report.deals.closed)

    def sent(self, report) -> None:
        """A send of owed notifications (``SendReport``)."""
        for result, n in (("sent", report.sent), ("refused", report.failed), ("retried", report.retry),
                          ("dropped", report.dropped)):
            self.notifications.labels(result).inc(n)
        hooks = report.webhooks
        if hooks is not None:
            for endpoint, outcome, seconds in hooks.attempts:
                self.webhooks.labels(endpoint, outcome).inc()
                if seconds is not None:
                    self.webhook_seconds.labels(endpoint).observe(seconds)
            self.webhook_waiting.set(hooks.oldest_waiting)
        steps = report.steps
        if steps is not None:
            for result, n in (("done", steps.done), ("sent", steps.sent), ("refused", steps.failed),
                              ("retried", steps.retry), ("dropped", steps.dropped)):
                self.steps.labels(result).inc(n)

    def smtp(self, down: bool) -> None:
        """After a send: whether the SMTP server took no email (``mailer.Outage``)."""
        self.smtp_ok.set(0 if down else 1)

    def troubles(self, counts: Iterable[tuple[str, int, int]]) -> None:
        """(mailbox, failed, set aside) as the ledger says now."""
        for mailbox, failed, set_aside in counts:
            self.failed.labels(mailbox).set(failed)
            self.set_aside.labels(mailbox).set(set_aside)
