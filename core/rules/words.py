"""What happened, in words: the events of a change as the command line and
the confirmation of a reply say them."""

from __future__ import annotations

WORDS = {
    "Created": lambda e: f"created, {e.status}, source {e.source}, "
                         + (f"owner {e.owner}" + (" (rotation)" if e.assigned_by == "rotation" else "")
                            if e.owner else "no owner"),
    "StatusChanged": lambda e: f"{e.old} → {e.new}" + (f" ({e.reason})" if e.reason else ""),
    "OwnerChanged": lambda e: f"owner {e.old or 'nobody'} → {e.new}",
    "StageChanged": lambda e: f"deal {e.old} → {e.new}" + (f" ({e.reason})" if e.reason else ""),
    "DealFieldsSet": lambda e: "deal " + ", ".join(f"{k} = {v}" for k, v in sorted(e.values.items())),
    "OnboardingNeeded": lambda e: "handed to onboarding",
    "DealWarned": lambda e: f"owner warned: closes {e.limit.at:%Y-%m-%d %H:%M} UTC ({e.limit.words})",
    "ClosedStale": lambda e: f"closed as stale ({e.limit.words})",
    "NoteAdded": lambda e: "note added",
    "Snoozed": lambda e: f"snoozed until {e.until.isoformat()}",
    "FieldsSet": lambda e: ", ".join(f"{k} = {v}" if v else f"{k} cleared" for k, v in sorted(e.values.items())),
    "ContactLogged": lambda e: f"{e.summary} (logged)",
    "ColumnChanged": lambda e: f"{e.column} {e.old or 'none'} → {e.new}",
    "TaskDue": lambda e: "task due " + e.due_at.isoformat(),
    "StepsOwed": lambda e: f"{'deal stage ' if e.deal else ''}{e.status}'s workflow started",
    "OpenTasksCancelled": lambda e: "open tasks cancelled",
    "StatusTasksCancelled": lambda e: f"open tasks of {e.status} cancelled",
    "AutomationBlocked": lambda e: e.summary,
    "OpportunityNeeded": lambda e: "opportunity created",
    "FollowUpLead": lambda e: f"follow-up lead{f' ({e.type})' if e.type else ''}, snoozed until "
                              f"{e.snoozed_until.isoformat()}",
    "DealLost": lambda e: "its open deal, if any, closed lost",
}


def plural(count: int, noun: str) -> str:
    """``1 open task``, ``2 open tasks``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def describe(event) -> str:
    return WORDS[type(event).__name__](event)


def described(changes: list) -> str:
    """The events of ``changes`` (a change and the moves automation made after it), in order."""
    return "; ".join(describe(event) for change in changes for event in change.events)
