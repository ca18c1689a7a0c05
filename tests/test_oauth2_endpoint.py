"""The token endpoint's answers as a careless or broken server gives them —
compressed, chunked, cut short, stalled, repeating the request — against
leadtap's client: a token, or one ``OAuth2Error`` that says what happened
and never shows a secret. A hand-written HTTP server on loopback."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from urllib.parse import parse_qs, quote_plus

import pytest

from leadtap.auth.endpoint import TokenEndpoint
from leadtap.core.config.oauth2 import OAuth2Config
from leadtap.core.config.secrets import Secret
from leadtap.core.errors import OAuth2Error

BODY = json.dumps({"access_token": "AT-123", "token_type": "Bearer", "expires_in": 3600}).encode()
SECRET = "s3cret-value"
REFRESH = "1//0gRefreshTok/en+x"  # a Google refresh token's shape: URL-encoded, it reads otherwise


def answer(mode: str, form: dict) -> list[tuple[bytes, float]]:
    """What the server sends, piece by piece, with a pause after each."""
    def reply(status: str, body: bytes, extra: bytes = b"") -> list[tuple[bytes, float]]:
        return [(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                 % (status.encode(), len(body), extra) + body, 0)]

    if mode == "gzip":
        return reply("200 OK", gzip.compress(BODY), b"Content-Encoding: gzip\r\n")
    if mode == "chunked":
        return [(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", 0.05),
                (b"%x\r\n%s\r\n" % (20, BODY[:20]), 0.05), (b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY) - 20, BODY[20:]), 0)]
    if mode == "cut_short":
        return [(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n" + BODY, 0)]
    if mode == "stalled":
        return [(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY), 10)]
    if mode == "secret_as_code":
        return reply("400 Bad Request", json.dumps({"error": form.get("client_secret", ""),
                                                    "error_description": "bad client"}).encode())
    if mode == "request_repeated":
        return reply("400 Bad Request", json.dumps({"error": "invalid_grant",
                                                    "error_description": "bad request: " + form["raw"]}).encode())
    raise AssertionError(mode)


@pytest.fixture
def endpoint():
    server = socket.create_server(("127.0.0.1", 0))
    modes: list[str] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                         .split(b":")[1])
            while len(rest) < length:
                rest += connection.recv(65536)
            form = {k: v[0] for k, v in parse_qs(rest.decode()).items()} | {"raw": rest.decode()}
            try:
                for piece, pause in answer(modes[-1], form):
                    connection.sendall(piece)
                    time.sleep(pause)
            except OSError:
                pass
            connection.close()

    threading.Thread(target=serve, daemon=True).start()

    def fetch(mode: str, grant: str = "client_credentials", refresh: str | None = None):
        modes.append(mode)
        config = OAuth2Config("generic", grant, f"http://127.0.0.1:{server.getsockname()[1]}/token", "imap",
                              client_id="leadtap", client_secret=Secret(SECRET), timeout=2.0)
        return TokenEndpoint(config, "jo@example.org").fetch(refresh)

    yield fetch
    server.close()


@pytest.mark.parametrize("mode", ["gzip", "chunked"])
def test_a_compressed_or_chunked_answer_is_read(endpoint, mode):
    assert endpoint(mode).access_token == "AT-123"


def test_an_answer_cut_short_is_a_passing_trouble(endpoint):
    with pytest.raises(OAuth2Error) as caught:
        endpoint("cut_short")
    assert not caught.value.attention and "cannot reach the token endpoint" in str(caught.value)


def test_a_stalled_answer_ends_at_the_timeout(endpoint):
    started = time.monotonic()
    with pytest.raises(OAuth2Error) as caught:
        endpoint("stalled")
    assert time.monotonic() - started < 4 and "did not answer within 2s" in str(caught.value)
    assert caught.value.code == "timeout" and not caught.value.attention


def test_a_secret_repeated_back_is_never_shown(endpoint):
    with pytest.raises(OAuth2Error) as as_code:
        endpoint("secret_as_code")
    assert SECRET not in str(as_code.value) and as_code.value.code == "invalid_response"
    with pytest.raises(OAuth2Error) as repeated:
        endpoint("request_repeated", grant="refresh_token", refresh=REFRESH)
    shown = str(repeated.value)
    assert "bad request" in shown
    for secret in (SECRET, REFRESH, quote_plus(REFRESH), quote_plus(SECRET)):
        assert secret not in shown
