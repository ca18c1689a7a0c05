"""The staleness policy's part of the reminder sweep: warn the owners of
deals near a limit, close lost those past it (``core.rules.deals``).

The candidates come from one indexed select; each deal is then read again
and changed in its own transaction under its lead's lock
(``core.use_cases.deal_changes.stale_step``), so two sweeps at once never warn or close
a deal twice, and one deal's failure never stops the others. The emails are
owed in that transaction and sent by the outbox after it commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import DBAPIError

from leadtap.core.rules import deals
from leadtap.core.use_cases.changes import LeadRules
from leadtap.core.store.engine import Database, describe_db_error
from leadtap.core.use_cases.deal_changes import stale_candidates, stale_step
from leadtap.core.rules.lifecycle import Refused
from leadtap.core.logs import get_logger


@dataclass
class DealReport:
    warned: int = 0
    closed: int = 0
    failed: int = 0
    done: list[str] = field(default_factory=list)  # each warning and closure, in words (a dry run's plan)

    @property
    def anything(self) -> bool:
        return bool(self.warned or self.closed or self.failed)

    def summary(self) -> str:
        return f"deals: {self.warned} warned, {self.closed} closed as stale" + (
            f", {self.failed} failed" if self.failed else "")


class DealSweep:
    def __init__(self, db: Database, rules: LeadRules, should_stop: Callable[[], bool] = lambda: False,
                 dry_run: bool = False):
        self.db, self.rules, self.should_stop = db, rules, should_stop
        self.log = get_logger("leadtap.deals").bind(**({"dry_run": True} if dry_run else {}))

    def run(self, now: datetime) -> DealReport:
        report = DealReport()
        if not self.rules.deals.staleness.enabled:
            return report
        with self.db.transaction() as session:
            candidates = stale_candidates(session, self.rules, now)
        for opportunity_id in candidates:
            if self.should_stop():
                break
            self.step(opportunity_id, now, report)
        return report

    def step(self, opportunity_id: int, now: datetime, report: DealReport) -> None:
        try:
            with self.db.transaction() as session:
                done = stale_step(session, self.rules, opportunity_id, now)
        except (Refused, DBAPIError) as exc:  # gone meanwhile, a deadlock's victim: the next sweep tries again
            error = describe_db_error(exc) if isinstance(exc, DBAPIError) else str(exc)
            self.log.warning("deal_sweep_failed", opportunity_id=opportunity_id, error=error)
            report.failed += 1
            return
        for change in done:
            for event in change.of(deals.DealWarned):
                report.warned += 1
                report.done.append(f"warn the owner of deal #{opportunity_id} (lead #{change.lead_id}): it closes "
                                   f"as stale at {event.closes_at.isoformat()} ({event.limit.words})")
                self.log.info("deal_warned", opportunity_id=opportunity_id, lead_id=change.lead_id,
                              closes_at=event.limit.at.isoformat(), limit=event.limit.words)
            for event in change.of(deals.ClosedStale):
                report.closed += 1
                report.done.append(f"close deal #{opportunity_id} (lead #{change.lead_id}) lost as stale "
                                   f"({event.limit.words})")
                self.log.info("deal_closed_stale", opportunity_id=opportunity_id, lead_id=change.lead_id,
                              limit=event.limit.words)
