"""OAuth2 sign-in for a mailbox or for SMTP: ``auth = "oauth2"`` and its
``[mailboxes.oauth2]`` / ``[smtp.oauth2]`` table, and the top-level
``[oauth2]`` table that holds the key tokens are encrypted with.

The presets fill in what Microsoft 365 and Google Workspace publish (token,
device and authorization endpoints, scopes, hosts), so such a mailbox needs
only its provider, grant and client; ``provider = "generic"`` takes a
``token_url`` and ``scope`` for any RFC 6749 server."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

from leadtap.core.config.secrets import Secret, at_least, resolve_secret, secret_reader
from leadtap.core.config.values import Section, is_loopback, parse_seconds

AUTH_MODES = ("password", "oauth2")
PROVIDERS = ("microsoft", "google", "generic")
GRANTS = ("client_credentials", "refresh_token", "service_account")
MECHANISMS = ("xoauth2", "oauthbearer")
TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,253}")

MICROSOFT_LOGIN = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_SCOPE = "https://mail.google.com/"
# What each provider's mailboxes are reached at, when the config names no host.
HOSTS = {
    ("microsoft", "imap"): ("outlook.office365.com", 993, "tls"),
    ("microsoft", "smtp"): ("smtp.office365.com", 587, "starttls"),
    ("google", "imap"): ("imap.gmail.com", 993, "tls"),
    ("google", "smtp"): ("smtp.gmail.com", 587, "starttls"),
}
# Microsoft's scopes: app-only (the app's own permission, IMAP.AccessAsApp or
# SMTP.SendAsApp, is granted in the tenant) and delegated (a person consents).
MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_DELEGATED_SCOPES = {
    "imap": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    "smtp": "https://outlook.office.com/SMTP.Send offline_access",
}


@dataclass(frozen=True)
class OAuth2Config:
    """How one mailbox (or SMTP) gets its access tokens."""

    provider: str
    grant: str
    token_url: str
    scope: str
    client_id: str | None = None
    client_secret: Secret | None = field(default=None, repr=False)
    key_file: str | None = None  # service_account: the JSON key's file, as written
    key: Secret | None = field(default=None, repr=False)  # its text, read when first needed
    tenant: str | None = None
    device_url: str | None = None  # refresh_token: where `auth login` starts a device-code sign-in
    authorize_url: str | None = None  # refresh_token: where `auth login` sends a person to consent
    mechanism: str = "xoauth2"
    timeout: float = 10.0

    def credential(self, username: str) -> str:
        """The token's identity: mailboxes that sign in as the same user with
        the same client and scope (an inbox and its sent folder) share one
        token and one ``auth login``; a changed client or scope starts afresh."""
        parts = (self.grant, self.token_url, self.client_id or "", self.key_file or "", self.scope,
                 username.lower())
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    @property
    def interactive(self) -> bool:
        """A person signs in once (``leadtap auth login``) before leadtap can."""
        return self.grant == "refresh_token"


@dataclass(frozen=True)
class TokenKeyConfig:
    """``[oauth2] token_key_file``: the key stored tokens are encrypted with."""

    key: Secret | None = field(default=None, repr=False)


def parse_auth(s: Section, table: Section, values: dict, protocol: str, environ: Mapping[str, str],
               warnings: list[str]) -> OAuth2Config | None:
    """``auth`` and, for ``oauth2``, its table; a preset's host and port fill in
    what the server table leaves out."""
    auth = values.setdefault("auth", "password")
    if auth not in AUTH_MODES:
        s.fail("auth", f"{auth!r} is not one of {list(AUTH_MODES)}")
    if auth != "oauth2":
        if table.data:
            s.fail("oauth2", 'an [oauth2] table is given, but auth is not "oauth2"; add auth = "oauth2"')
        return None
    for key in ("password", "password_env", "password_file"):
        if key in values:
            s.fail(key, 'auth = "oauth2" signs in with a token, not a password; leave the password out')
    oauth2 = parse_oauth2(table, protocol, environ, warnings)
    host, port, security = HOSTS.get((oauth2.provider, protocol), (None, None, None))
    if "host" not in values:
        if host is None:
            s.fail("host", "this key is required")
        values["host"] = host
        values.setdefault("port", port)
        values.setdefault("security", security)
    if "username" not in values:
        s.fail("username", "this key is required: the mailbox's address, which the token signs in as")
    return oauth2


def parse_oauth2(s: Section, protocol: str, environ: Mapping[str, str], warnings: list[str]) -> OAuth2Config:
    values = s.take(
        {"provider": str, "grant": str, "tenant": str, "client_id": str, "client_secret": str,
         "client_secret_env": str, "client_secret_file": str, "key_file": str, "token_url": str, "scope": str,
         "device_url": str, "authorize_url": str, "mechanism": str, "timeout": parse_timeout},
        required=("provider", "grant"),
    )
    provider, grant = values["provider"], values["grant"]
    if provider not in PROVIDERS:
        s.fail("provider", f"{provider!r} is not one of {list(PROVIDERS)}")
    if grant not in GRANTS:
        s.fail("grant", f"{grant!r} is not one of {list(GRANTS)}")
    if values.setdefault("mechanism", "xoauth2") not in MECHANISMS:
        s.fail("mechanism", f"{values['mechanism']!r} is not one of {list(MECHANISMS)}")
    check_grant(s, provider, grant, values)
    values["client_secret"] = client_secret(s, grant, values, environ, warnings)
    if grant == "service_account":
        values["key"] = Secret(load=secret_reader(s, "key_file", values["key_file"], environ))
    PRESETS[provider](s, grant, protocol, values)
    for key in ("token_url", "device_url", "authorize_url"):
        if values.get(key):
            check_url(s, key, values[key])
    return OAuth2Config(**values)


MAX_TIMEOUT = 30  # seconds: a token request ends well within the refresh claim (60 s) it holds


def parse_timeout(value) -> float:
    seconds = parse_seconds(value)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"a duration up to {MAX_TIMEOUT}s is expected, e.g. \"10s\"")
    return float(seconds)


def check_grant(s: Section, provider: str, grant: str, values: dict) -> None:
    """What each grant needs, and which provider offers it."""
    if provider == "microsoft" and grant == "service_account":
        s.fail("grant", "Microsoft has no service accounts: an app signs in as itself with "
                        "grant = \"client_credentials\" (IMAP.AccessAsApp)")
    if provider == "google" and grant == "client_credentials":
        s.fail("grant", "Google gives no mail access to a client alone: use grant = \"service_account\" "
                        "(Workspace, domain-wide delegation) or \"refresh_token\" (a person signs in once)")
    if grant == "service_account":
        if "key_file" not in values:
            s.fail("key_file", "grant = \"service_account\" signs with the service account's JSON key: "
                               "key_file is required")
    elif "client_id" not in values:
        s.fail("client_id", "this key is required (the app's client or application id)")
    if grant != "service_account" and "key_file" in values:
        s.fail("key_file", "only grant = \"service_account\" signs with a key file")


def client_secret(s: Section, grant: str, values: dict, environ: Mapping[str, str],
                  warnings: list[str]) -> Secret | None:
    """client_credentials needs the client's secret; a refresh_token client
    may be public (no secret: Microsoft's device-code sign-in)."""
    given = [k for k in ("client_secret", "client_secret_env", "client_secret_file") if k in values]
    if grant == "service_account" and given:
        s.fail(given[0], "grant = \"service_account\" signs with its key_file, not a client secret")
    if grant == "client_credentials" and not given:
        s.fail("client_secret_file", "grant = \"client_credentials\" needs the client's secret: "
                                     "client_secret_file or client_secret_env")
    if not given:
        return None
    secret = resolve_secret(s, values, "client_secret", environ, warnings)
    for key in ("client_secret_env", "client_secret_file"):
        values.pop(key, None)
    return secret


def microsoft(s: Section, grant: str, protocol: str, values: dict) -> None:
    tenant = values.get("tenant")
    if tenant is None:
        if grant == "client_credentials":
            s.fail("tenant", "an app signs in to one tenant: tenant is required "
                             "(e.g. \"contoso.onmicrosoft.com\" or its directory id)")
        tenant = values["tenant"] = "organizations"
    if not TENANT_RE.fullmatch(tenant):
        s.fail("tenant", f"{tenant!r} is not a tenant name or id")
    if grant == "client_credentials" and tenant.lower() in ("common", "organizations", "consumers"):
        s.fail("tenant", f"an app signs in to one tenant, not {tenant!r}: give its domain or directory id")
    if values.get("mechanism") == "oauthbearer":
        s.fail("mechanism", "Microsoft's IMAP and SMTP take XOAUTH2 only")
    base = MICROSOFT_LOGIN.format(tenant=tenant)
    values.setdefault("token_url", f"{base}/token")
    values.setdefault("device_url", f"{base}/devicecode")
    values.setdefault("authorize_url", f"{base}/authorize")
    if grant == "client_credentials":
        values.setdefault("scope", MICROSOFT_APP_SCOPE)
    else:
        values.setdefault("scope", MICROSOFT_DELEGATED_SCOPES[protocol])


def google(s: Section, grant: str, protocol: str, values: dict) -> None:
    if "tenant" in values:
        s.fail("tenant", "only provider = \"microsoft\" has tenants")
    values.setdefault("token_url", GOOGLE_TOKEN_URL)
    values.setdefault("authorize_url", GOOGLE_AUTHORIZE_URL)
    values.setdefault("scope", GOOGLE_SCOPE)


def generic(s: Section, grant: str, protocol: str, values: dict) -> None:
    if "tenant" in values:
        s.fail("tenant", "only provider = \"microsoft\" has tenants")
    for key in ("token_url", "scope"):
        if key not in values:
            s.fail(key, f"provider = \"generic\" names its own {key}: this key is required")


PRESETS = {"microsoft": microsoft, "google": google, "generic": generic}


def check_url(s: Section, key: str, url: str) -> None:
    """Tokens travel only over TLS, or to this machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    s.fail(key, f"{url!r} is not an https:// URL (http:// only to a loopback host)")


def parse_token_key(s: Section, environ: Mapping[str, str], needed: bool) -> TokenKeyConfig:
    values = s.take({"token_key_file": str, "token_key_env": str})
    given = [k for k in ("token_key_file", "token_key_env") if k in values]
    if len(given) > 1:
        s.fail("token_key_env", "one of token_key_file or token_key_env is expected, not both")
    if not given:
        if needed:
            s.fail("token_key_file", "auth = \"oauth2\" stores its tokens encrypted, so a key is required: "
                                     "token_key_file (e.g. made with `openssl rand -base64 32 > token.key`) "
                                     "or token_key_env")
        return TokenKeyConfig()
    secret = resolve_secret(s, values, "token_key", environ, [], literal=False)
    return TokenKeyConfig(at_least(s, given[0], secret.reveal, MIN_KEY_CHARS, lambda v: len(v.strip()), "key",
                                   "characters", "make one with: openssl rand -base64 32"))


MIN_KEY_CHARS = 32  # of the token key: refused when read (`run` reads it at start)
