"""A person signs in once, so that leadtap holds a refresh token
(``leadtap auth login``) — on a headless server too:

- the device code flow (RFC 8628; Microsoft's, and any server with a
  ``device_url``): leadtap shows a short code and a web address; the person
  opens it on any device and enters the code;
- the authorization code flow with PKCE (RFC 7636; Google's, whose device
  flow does not allow the mail scope): leadtap shows an address to open in a
  browser; after consent the browser is sent to ``http://127.0.0.1/…``
  (which need not load: nothing listens there) and the person pastes that
  address back.

authlib builds the requests and reads the answers; this module drives the
conversation and translates its failures into ``OAuth2Error``."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs, urlsplit
from dataclasses import dataclass
from typing import Callable

from leadtap.auth.endpoint import Grant, TokenEndpoint, grant_of
from leadtap.core.config.oauth2 import OAuth2Config
from leadtap.core.errors import OAuth2Error

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# The loopback redirect a desktop client may use (RFC 8252 7.3): nothing listens
# there; the person copies the address the browser was sent to.
REDIRECT_URI = "http://127.0.0.1:8765/"


@dataclass(frozen=True)
class Prompt:
    """What the person is asked to do."""

    say: Callable[[str], None]
    ask: Callable[[str], str]


def sign_in(config: OAuth2Config, username: str, prompt: Prompt, method: str | None = None,
            clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Grant:
    """The first tokens of a person's grant; ``method``: "device" or "paste" (default: the provider's)."""
    method = method or default_method(config)
    endpoint = TokenEndpoint(config, username)
    if method == "device":
        if not config.device_url:
            raise OAuth2Error("this sign-in has no device_url: use --method paste", attention=True, code="usage")
        return device_code(endpoint, prompt, clock, sleep)
    if not config.authorize_url:
        raise OAuth2Error("this sign-in has no authorize_url: use --method device", attention=True, code="usage")
    return pasted_code(endpoint, username, prompt)


def default_method(config: OAuth2Config) -> str:
    """Google's device flow refuses the mail scope; everyone else's device flow is the easiest."""
    return "paste" if config.provider == "google" or not config.device_url else "device"


def device_code(endpoint: TokenEndpoint, prompt: Prompt, clock, sleep) -> Grant:
    """RFC 8628: show the code, then poll the token endpoint at the interval asked until the person is done."""
    config = endpoint.config
    with endpoint.translated(), endpoint.session(bounded_by=None) as session:
        started = session.post(config.device_url, data={"client_id": config.client_id, "scope": config.scope},
                               withhold_token=True)
        answer = json_object(started) or {}
        if "device_code" not in answer:
            raise OAuth2Error(f"{endpoint.host} did not start a device sign-in: "
                              f"{answer.get('error', f'HTTP {started.status_code}')}", attention=True,
                              code=answer.get("error", "device"))
        prompt.say(answer.get("message") or f"Open {answer['verification_uri']} and enter the code "
                                            f"{answer['user_code']}.")
        interval, deadline = float(answer.get("interval", 5)), clock() + float(answer.get("expires_in", 900))
        while clock() < deadline:
            sleep(interval)
            reply = session.post(config.token_url, data={"grant_type": DEVICE_GRANT, "client_id": config.client_id,
                                                         "device_code": answer["device_code"],
                                                         **secret_field(config)}, withhold_token=True)
            token = json_object(reply)
            if token is None:  # a gateway's error page: RFC 8628 3.5 says wait longer and ask again
                interval = min(interval * 2, 60)
                prompt.say(f"the sign-in service answered HTTP {reply.status_code}; asking again in {interval:.0f}s")
                continue
            error = token.get("error")
            if error is None:
                return grant_of(token)
            if error == "slow_down":
                interval += 5
            elif error != "authorization_pending":
                raise OAuth2Error(f"{endpoint.host} ended the sign-in: {error}: "
                                  f"{token.get('error_description', '')}".rstrip(": "), attention=True, code=error)
            prompt.say(f"waiting for the sign-in… ({deadline - clock():.0f}s left)")
    raise OAuth2Error("the code expired before the sign-in was done: run the command again", attention=True,
                      code="expired_token")


def pasted_code(endpoint: TokenEndpoint, username: str, prompt: Prompt) -> Grant:
    """RFC 7636: an address to open; the address the browser was sent to, pasted back."""
    config = endpoint.config
    verifier = secrets.token_urlsafe(48)
    with endpoint.translated(), endpoint.session(bounded_by=None) as session:
        session.redirect_uri, session.code_challenge_method = REDIRECT_URI, "S256"
        url, state = session.create_authorization_url(
            config.authorize_url, code_verifier=verifier, login_hint=username,
            # Google gives a refresh token only for offline access, and again only with consent.
            **({"access_type": "offline", "prompt": "consent"} if config.provider == "google" else {}))
        prompt.say(f"Open this address in a browser, sign in as {username} and allow access:\n\n{url}\n\n"
                   "The browser then goes to an address starting with http://127.0.0.1 that does not load: "
                   "copy that address from the browser's address bar.")
        pasted = prompt.ask("Paste the address here: ").strip()
        refused = parse_qs(urlsplit(pasted).query).get("error")
        if refused:
            reason = parse_qs(urlsplit(pasted).query).get("error_description", [""])[0]
            raise OAuth2Error(f"the sign-in was refused: {refused[0]}" + (f": {reason[:200]}" if reason else ""),
                              attention=True, code=refused[0][:64])
        if "code=" not in pasted:
            raise OAuth2Error("that address has no code=…: paste the whole address the browser went to",
                              attention=True, code="usage")
        token = session.fetch_token(config.token_url, authorization_response=pasted, code_verifier=verifier,
                                    state=state, redirect_uri=REDIRECT_URI)
    return grant_of(token)


def json_object(reply) -> dict | None:
    try:
        answer = reply.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def secret_field(config: OAuth2Config) -> dict:
    return {"client_secret": config.client_secret.reveal()} if config.client_secret else {}
