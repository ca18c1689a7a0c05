"""The ``[commands]`` table: owners act by replying to leadtap's emails.

    [commands]
    secret_file = "${CREDENTIALS_DIRECTORY}/commands"   # or secret_env; 32 bytes or more
    address = "crm@example.com"       # Reply-To of every leadtap email: a watched mailbox
    token_max_age = "30d"             # a reply to an older email does not run
    digest_token_max_age = "7d"       # nor one to an older digest (it acts on the leads it listed only)
    authserv_id = "mx.example.com"    # optional: its Authentication-Results must pass DMARC or DKIM
    require_dkim_identity = "domain"  # or "mailbox": a DKIM signature for the From address itself
    confirmations_per_hour = 10       # to one sender; past it, replies still run, unconfirmed

The secret is read when first needed, like the passwords; a missing or short
one is refused then, naming the key (``leadtap check`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Mapping

from leadtap.core.config.secrets import Secret, at_least, secret_reader
from leadtap.core.config.values import Section, parse_seconds
from leadtap.core.rules.model import EMAIL_RE
from leadtap.core.rules.tokens import MIN_SECRET

DEFAULT_MAX_AGE = timedelta(days=30)
DEFAULT_DIGEST_MAX_AGE = timedelta(days=7)
DEFAULT_CONFIRMATIONS_PER_HOUR = 10
IDENTITIES = ("domain", "mailbox")


@dataclass(frozen=True)
class CommandsConfig:
    secret: Secret | None = field(default=None, repr=False)
    address: str | None = None
    token_max_age: timedelta = DEFAULT_MAX_AGE
    authserv_id: str | None = None
    digest_token_max_age: timedelta = DEFAULT_DIGEST_MAX_AGE
    require_dkim_identity: str = "domain"
    confirmations_per_hour: int = DEFAULT_CONFIRMATIONS_PER_HOUR

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def secret_bytes(self) -> bytes:
        return self.secret.reveal().encode("utf-8")


def parse_commands(s: Section, environ: Mapping[str, str]) -> CommandsConfig:
    if not s.data:
        s.take({})
        return CommandsConfig()
    values = s.take({"secret_file": str, "secret_env": str, "address": str, "token_max_age": parse_seconds,
                     "authserv_id": str, "digest_token_max_age": parse_seconds, "require_dkim_identity": str,
                     "confirmations_per_hour": int})
    given = [k for k in ("secret_file", "secret_env") if k in values]
    if len(given) != 1:
        s.fail("secret_file", "exactly one of secret_file or secret_env is expected (32 bytes or more)")
    if "address" in values and not EMAIL_RE.fullmatch(values["address"]):
        s.fail("address", f"{values['address']!r} is not an email address")
    check_choices(s, values)
    return CommandsConfig(commands_secret(s, given[0], values[given[0]], environ), values.get("address"),
                          timedelta(seconds=values.get("token_max_age", DEFAULT_MAX_AGE.total_seconds())),
                          values.get("authserv_id"),
                          timedelta(seconds=values.get("digest_token_max_age",
                                                       DEFAULT_DIGEST_MAX_AGE.total_seconds())),
                          values.get("require_dkim_identity", "domain"),
                          values.get("confirmations_per_hour", DEFAULT_CONFIRMATIONS_PER_HOUR))


# Names of results, not of servers: a field that starts with one of them has
# no authserv-id (Exchange Online writes its results so), and leadtap cannot
# tell that server's fields from a sender's.
METHODS = {"spf", "dkim", "dmarc", "arc", "auth", "iprev", "dkim-atps", "dkim-adsp", "sender-id", "compauth",
           "bimi", "rrvs", "smime", "vbr", "x-tls"}


def check_choices(s: Section, values: dict) -> None:
    if values.get("authserv_id", "").lower() in METHODS:
        s.fail("authserv_id", f"{values['authserv_id']!r} names a method, not a server: its fields carry no "
                              "authserv-id (Exchange Online's), which leadtap cannot tell from a sender's")
    identity = values.get("require_dkim_identity", "domain")
    if identity not in IDENTITIES:
        s.fail("require_dkim_identity", f"{identity!r} is not one of: {', '.join(IDENTITIES)}")
    if identity == "mailbox" and not values.get("authserv_id"):
        s.fail("require_dkim_identity", "needs authserv_id: whose Authentication-Results say the signature passed")
    if values.get("confirmations_per_hour", 1) < 1:
        s.fail("confirmations_per_hour", "at least 1 is expected")


def commands_secret(s: Section, key: str, written: str, environ: Mapping[str, str]) -> Secret:
    return at_least(s, key, secret_reader(s, key, written, environ), MIN_SECRET, lambda v: len(v.encode("utf-8")),
                    "secret", "bytes", "e.g. head -c 48 /dev/urandom | base64")
