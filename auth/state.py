"""What a sign-in's row says to a person: signed in and fine, waiting on the
provider, or needing someone to act — for `auth status`, `check`, the
metrics and systemd's status line. Reads no token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadtap.core.store.oauth_tokens import TokenRow

OK, WAITING, ATTENTION, NOT_SIGNED_IN = "ok", "waiting", "needs attention", "not signed in"


@dataclass(frozen=True)
class SignInState:
    state: str  # ok | waiting | needs attention | not signed in
    detail: str

    @property
    def ok(self) -> bool:
        return self.state == OK


def sign_in_state(row: TokenRow | None, interactive: bool, login_command: str, now: datetime) -> SignInState:
    if row is None or (interactive and row.refresh_token is None):
        if interactive:
            return SignInState(NOT_SIGNED_IN, f"run: {login_command}")
        return SignInState(OK, "no token yet: one is fetched at the first sign-in")
    if row.attention:
        return SignInState(ATTENTION, row.error or "refused")
    if row.error:
        return SignInState(WAITING, row.error)
    if row.expires_at is not None and row.expires_at > now:
        return SignInState(OK, f"token valid until {row.expires_at:%Y-%m-%d %H:%M} UTC")
    return SignInState(OK, "token expired: renewed at the next sign-in")
