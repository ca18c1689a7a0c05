"""``[[webhooks]]``: where leads and deals go out as they change — signed as
the Standard Webhooks specification says (``core.rules.webhooks``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping
from urllib.parse import urlsplit

from leadtap.core.config.secrets import Secret, at_least, secret_reader
from leadtap.core.config.values import Section, is_loopback, list_of_str, parse_seconds
from leadtap.core.rules.webhooks import EVENTS, FORMATS, secret_bytes

DEFAULT_TIMEOUT = timedelta(seconds=10)
DEFAULT_HORIZON = timedelta(days=3)
MAX_NAME = 100  # the webhook_deliveries.endpoint column
CHECKS = ("head", "ping", "none")


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    url: str
    events: tuple[str, ...]
    secret: Secret  # whsec_<base64>, as the Standard Webhooks libraries make and read it
    format: str = "json"
    timeout: timedelta = DEFAULT_TIMEOUT
    horizon: timedelta = DEFAULT_HORIZON  # how long an event is retried before it is given up
    check: str = "head"  # what `leadtap check` does: head (a HEAD request), ping (a signed ping), none
    ca_file: str | None = None  # trust this CA for the https:// endpoint instead of the system's

    def wants(self, event: str) -> bool:
        return event in self.events


def parse_webhook(s: Section, environ: Mapping[str, str]) -> WebhookConfig:
    values = s.take({"name": str, "url": str, "events": list_of_str, "secret_file": str, "secret_env": str,
                     "format": str, "timeout": parse_seconds, "horizon": parse_seconds, "check": str,
                     "ca_file": str},
                    required=("name", "url", "events"))
    name = values["name"]
    if name != name.strip() or len(name) > MAX_NAME:
        s.fail("name", f"a name of 1 to {MAX_NAME} characters, no space around it, is expected")
    check_url(s, values["url"])
    for event in values["events"]:
        if event not in EVENTS:
            s.fail("events", f"unknown event {event!r}; expected some of {list(EVENTS)}")
    if not values["events"]:
        s.fail("events", f"at least one event is expected, of {list(EVENTS)}")
    if values.get("check", "head") not in CHECKS:
        s.fail("check", f"{values['check']!r}: expected one of {list(CHECKS)}")
    if values.get("format", "json") not in FORMATS:
        s.fail("format", f"{values['format']!r}: expected one of {list(FORMATS)}")
    given = [key for key in ("secret_file", "secret_env") if key in values]
    if len(given) != 1:
        s.fail("secret_file", "exactly one of secret_file or secret_env is expected (a whsec_… secret)")
    secret = at_least(s, given[0], secret_reader(s, given[0], values[given[0]], environ), 24, secret_size,
                      "secret", "bytes", "a whsec_ prefix and base64, e.g. echo whsec_$(head -c 32 /dev/urandom | "
                                         "base64)")
    return WebhookConfig(name, values["url"], tuple(dict.fromkeys(values["events"])), secret,
                         values.get("format", "json"),
                         timedelta(seconds=values["timeout"]) if "timeout" in values else DEFAULT_TIMEOUT,
                         timedelta(seconds=values["horizon"]) if "horizon" in values else DEFAULT_HORIZON,
                         values.get("check", "head"),
                         str(s.path.resolve().parent / values["ca_file"]) if "ca_file" in values else None)


def secret_size(value: str) -> int:
    """The secret's bytes once decoded; 0 when it is not whsec_ and base64."""
    try:
        return len(secret_bytes(value))
    except ValueError:
        return 0


def check_url(s: Section, url: str) -> None:
    """``https://``, or ``http://`` to this machine (a receiver beside leadtap): a lead's data never goes out in clear."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        s.fail("url", f"{url!r}: an https:// URL is expected")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        s.fail("url", f"{url!r}: http:// only to this machine (127.0.0.1, ::1, localhost); use https://")
    if parts.username or parts.password:
        s.fail("url", "no credentials in the URL: the signature authenticates leadtap")
