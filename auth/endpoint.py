"""A provider's token endpoint, asked for an access token by the sign-in's
grant. authlib speaks the protocol (RFC 6749's client credentials and refresh,
RFC 7523's JWT bearer for service accounts); this module picks the grant and
translates every failure into ``OAuth2Error``: ``attention`` when a person
must act, not when the endpoint is down or slow."""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

from leadtap.core.config.oauth2 import OAuth2Config
from leadtap.core.errors import OAuth2Error

# A provider's error codes that trying again later may cure (RFC 6749 §5.2 and
# the authorization server's own); any other refusal needs a person.
TRANSIENT_CODES = {"temporarily_unavailable", "server_error", "slow_down"}
AADSTS_RE = re.compile(r"\bAADSTS(\d+)\b")
ERROR_CODE_RE = re.compile(r"[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}")  # RFC 6749 5.2's error, kept short
# What Microsoft's commonest sign-in errors mean, in words an operator acts on.
AADSTS_MEANINGS = {
    "700082": "the refresh token expired after 90 days unused: sign in again",
    "50173": "the grant was revoked (the user's password was changed or reset): sign in again",
    "70008": "the refresh token or code expired: sign in again",
    "70043": "the refresh token expired under a Conditional Access sign-in frequency policy: sign in again",
    "50076": "multi-factor authentication is now required: sign in again",
    "50079": "the user must register for multi-factor authentication, then sign in again",
    "65001": "the app has no consent for this permission: an admin grants it (admin consent)",
    "650057": "the scope is not among the app's configured permissions",
    "7000215": "the client secret is wrong (give the secret's Value, not its ID)",
    "7000222": "the client secret has expired: create a new one in the app registration",
    "700016": "no such application in this tenant: check client_id and tenant",
    "90002": "no such tenant: check tenant",
    "50034": "no such user in this tenant",
    "53003": "blocked by a Conditional Access policy",
    "500011": "the resource is not in the tenant: check scope",
    "7000112": "the application is disabled",
}


@dataclass(frozen=True)
class Grant:
    """What the token endpoint gave."""

    access_token: str
    expires_in: float  # seconds
    refresh_token: str | None  # a new (rotated) refresh token, when one came


class TokenEndpoint:
    """Access tokens for one sign-in (``config``, as ``username``)."""

    def __init__(self, config: OAuth2Config, username: str):
        self.config, self.username = config, username

    @property
    def host(self) -> str:
        return urlsplit(self.config.token_url).hostname or self.config.token_url

    def fetch(self, refresh_token: str | None) -> Grant:
        """A new access token by the configured grant (the refresh token for
        ``refresh_token``); an ``OAuth2Error`` when none is given."""
        self.scrub = [refresh_token]
        with self.translated():
            token = GRANTS[self.config.grant](self, refresh_token)
        return grant_of(token)

    def client_credentials(self, _refresh_token: str | None) -> dict:
        with self.session() as session:
            return session.fetch_token(self.config.token_url, grant_type="client_credentials")

    def refresh(self, refresh_token: str | None) -> dict:
        if not refresh_token:
            raise OAuth2Error("not signed in yet", attention=True, code="not_signed_in")
        with self.session() as session:
            return session.refresh_token(self.config.token_url, refresh_token=refresh_token)

    def service_account(self, _refresh_token: str | None) -> dict:
        """RFC 7523: a JWT signed with the service account's key, for the
        mailbox as subject (Google's domain-wide delegation)."""
        from authlib.integrations.requests_client import AssertionSession
        from joserfc.jwk import RSAKey  # (Authlib's own JOSE library)

        key = read_key(self.config)
        self.scrub = [key["private_key"]]
        session = AssertionSession(
            token_endpoint=self.config.token_url, issuer=key["client_email"], subject=self.username,
            audience=key.get("token_uri") or self.config.token_url, claims={"scope": self.config.scope},
            key=RSAKey.import_key(key["private_key"]), header={"alg": "RS256", **({"kid": key["private_key_id"]}
                                                                if key.get("private_key_id") else {})},
            default_timeout=self.config.timeout)
        with bounded(session, self.config.timeout):
            return session.refresh_token()

    @contextmanager
    def session(self, bounded_by: float | None = -1) -> Iterator:
        """An authlib session whose exchange ends within the timeout (``bounded_by``; None: a person's
        sign-in, which waits for them; each request still has the timeout)."""
        from authlib.integrations.requests_client import OAuth2Session

        secret = self.config.client_secret.reveal() if self.config.client_secret else None
        session = OAuth2Session(self.config.client_id, secret, scope=self.config.scope,
                                token_endpoint_auth_method="client_secret_post" if secret else "none",
                                default_timeout=self.config.timeout)
        with bounded(session, self.config.timeout if bounded_by == -1 else bounded_by):
            yield session

    def secrets(self, *more: str | None) -> list[str]:
        """What must never be repeated back in an error: the client secret and the grant's own tokens."""
        found = [self.config.client_secret.reveal() if self.config.client_secret else None, *more]
        return [value for value in found if value and len(value) >= 4]

    @contextmanager
    def translated(self) -> Iterator[None]:
        """authlib's and requests' errors, as leadtap's."""
        import requests
        import urllib3
        from authlib.common.errors import AuthlibBaseError

        try:
            yield
        except OAuth2Error:
            raise
        except AuthlibBaseError as exc:
            raise refusal(self.host, getattr(exc, "error", None) or "oauth_error",
                          getattr(exc, "description", None) or "", self.secrets(*getattr(self, "scrub", ()))) from None
        except requests.TooManyRedirects:
            raise OAuth2Error(f"the token endpoint {self.host} redirects elsewhere: is the token_url right?",
                              attention=True, code="redirect") from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise OAuth2Error(f"the token endpoint {self.host} answered HTTP {status}",
                              attention=not (status >= 500 or status == 429), code=f"http_{status}") from None
        except (requests.Timeout, Overdue):
            raise OAuth2Error(f"the token endpoint {self.host} did not answer within {self.config.timeout:g}s",
                              attention=False, code="timeout") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # (urllib3's: read in our hook)
            if isinstance(exc, (urllib3.exceptions.TimeoutError, requests.Timeout)):
                raise OAuth2Error(f"the token endpoint {self.host} did not answer within "
                                  f"{self.config.timeout:g}s", attention=False, code="timeout") from None
            raise OAuth2Error(f"cannot reach the token endpoint {self.host}: {type(exc).__name__}",
                              attention=False, code="unreachable") from None
        except ValueError as exc:  # an answer that is not a JSON object (authlib), a key that is not one
            raise OAuth2Error(f"the token endpoint {self.host} gave no token: {exc}", attention=True,
                              code="bad_answer") from None


GRANTS = {
    "client_credentials": TokenEndpoint.client_credentials,
    "refresh_token": TokenEndpoint.refresh,
    "service_account": TokenEndpoint.service_account,
}


def grant_of(token: dict) -> Grant:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuth2Error("the token endpoint answered without an access token", attention=True, code="bad_answer")
    try:
        expires_in = float(token.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600.0
    refresh = token.get("refresh_token")
    return Grant(access, max(expires_in, 1.0), refresh if isinstance(refresh, str) and refresh else None)


def refusal(host: str, code: str, description: str, secrets: list[str] = ()) -> OAuth2Error:
    """The provider's own words, first line only (Microsoft appends trace
    and correlation ids), with what a known AADSTS code means. Nothing it
    repeats of the request (a secret, a token) is kept: an error code outside
    RFC 6749's characters is replaced, and any secret is blotted out."""
    if not ERROR_CODE_RE.fullmatch(code or "") or scrubbed(code, secrets) != code:
        code = "invalid_response"
    first = scrubbed(description.strip().split("\r\n")[0].split("\n")[0], secrets)[:300]
    found = AADSTS_RE.search(description)
    meaning = AADSTS_MEANINGS.get(found.group(1)) if found else None
    text = f"{host} refused: {code}" + (f": {first}" if first else "") + (f" — {meaning}" if meaning else "")
    return OAuth2Error(text, attention=code not in TRANSIENT_CODES, code=code)


def scrubbed(text: str, secrets: list[str]) -> str:
    """``text`` with every secret blotted out, as written and as a form or URL would encode it."""
    from urllib.parse import quote, quote_plus

    for secret in secrets:
        for form in {secret, quote_plus(secret), quote(secret, safe="")}:
            text = text.replace(form, "***")
    return text


class Overdue(Exception):
    """The token request outlived its deadline (an endpoint answering a byte at a time)."""


MAX_ANSWER = 64 * 1024  # bytes: a token answer is a few hundred


@contextmanager
def bounded(session, seconds: float | None) -> Iterator[None]:
    """The token endpoint's answer body is read whole within ``seconds`` of
    the request (requests' timeout is per read, so an endpoint answering a
    byte at a time would hold the refresh claim for ever) and up to 64 KiB;
    the connection and the headers have the per-read timeout. No redirect is
    followed: a token endpoint answers; it does not send the secret on
    elsewhere."""
    session.max_redirects = 0
    if seconds is not None:
        deadline = time.monotonic() + seconds
        session.hooks["response"].append(lambda response, **_: read_within(response, deadline))
    with session:
        yield


def read_within(response, deadline: float):
    """Read the body now, by the deadline and the size cap, before requests would read it without either.
    An answer complete when the deadline passes is kept: the provider may have rotated a refresh token in it."""
    body = bytearray()
    read1 = getattr(response.raw, "read1", None)  # urllib3 2: what has come, without waiting for more
    while chunk := (read1(1024, decode_content=True) if read1 else response.raw.read(1, decode_content=True)):
        body += chunk
        if time.monotonic() > deadline and response.raw.length_remaining != 0:
            response.close()
            raise Overdue()
        if len(body) > MAX_ANSWER:
            response.close()
            raise ValueError(f"an answer over {MAX_ANSWER // 1024} KiB")
    response._content, response._content_consumed = bytes(body), True
    return response


def read_key(config: OAuth2Config) -> dict:
    """A service account's JSON key: ``client_email`` and ``private_key``."""
    from leadtap.core.errors import ConfigError

    try:
        key = json.loads(config.key.reveal())
    except ConfigError as exc:  # the file cannot be read: named with its key
        raise OAuth2Error(str(exc), attention=True, code="key_file") from None
    except ValueError:
        raise OAuth2Error(f"the key_file {config.key_file!r} is not JSON (a service account's key is)",
                          attention=True, code="key_file") from None
    missing = [k for k in ("client_email", "private_key") if not isinstance(key, dict) or not key.get(k)]
    if missing:
        raise OAuth2Error(f"the key_file {config.key_file!r} has no {' or '.join(missing)}: is it a service "
                          "account key?", attention=True, code="key_file")
    check_private_key(config, key["private_key"])
    return key


def check_private_key(config: OAuth2Config, pem) -> None:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        loaded = load_pem_private_key(pem.encode() if isinstance(pem, str) else b"", password=None)
    except (ValueError, TypeError):
        loaded = None
    if not isinstance(loaded, RSAPrivateKey):
        raise OAuth2Error(f"the key_file {config.key_file!r}: its private_key is not an RSA key in PEM "
                          "(a service account's key is)", attention=True, code="key_file")
