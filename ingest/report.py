"""What one ingest pass over one mailbox did: counts per outcome, progress
for a terminal, the one-line summary ``poll`` prints and the journal logs."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from leadtap.core.rules.model import Outcome


@dataclass
class PassReport:
    """What one pass over one mailbox did."""

    mailbox: str
    counts: Counter = field(default_factory=Counter)
    error: str | None = None
    total: int = 0  # candidate messages in this pass
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    repaired: int = 0  # read with warnings (a broken structure, a charset, a header)
    seconds: float = 0.0
    unrecorded: list[int] = field(default_factory=list)  # UIDs the database took no row for: read again next pass
    sign_in_refused: bool = False  # the server (or the OAuth2 provider) refused the sign-in: a person must act

    @property
    def failed(self) -> bool:
        return self.error is not None or self.counts[Outcome.FAILED] > 0 or bool(self.unrecorded)

    def progress(self) -> str:
        """``sales: 1,200/5,000 messages, 850/s`` — for a terminal."""
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        return f"{self.mailbox}: {self.done:,}/{self.total:,} messages, {rate:,.0f}/s"

    def summary(self) -> str:
        parts = [f"{self.counts[o]} {OUTCOME_WORDS[o][self.counts[o] != 1]}" for o in Outcome if self.counts[o]]
        if self.error:  # what it did before it stopped, then why
            return f"{self.mailbox}: " + (f"{', '.join(parts)}, then stopped: " if parts else "not polled: ") + self.error
        if self.repaired:
            parts.append(f"{self.repaired} repaired")
        if self.unrecorded:
            parts.append(f"UID {', '.join(map(str, self.unrecorded[:5]))} not recorded (the database refused even the "
                         "failure; read again next pass)")
        return f"{self.mailbox}: " + (", ".join(parts) if parts else "nothing new")


OUTCOME_WORDS = {
    Outcome.LEAD: ("new lead", "new leads"),
    Outcome.ATTACHED: ("added to a lead", "added to leads"),
    Outcome.DUPLICATE: ("duplicate", "duplicates"),
    Outcome.NOT_LEAD: ("not a lead", "not leads"),
    Outcome.FAILED: ("failed", "failed"),
}
