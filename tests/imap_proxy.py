"""An IMAP proxy that ends sessions as Exchange Online does: each session
signed in with an OAuth2 token is cut when that token expires, with
``* BYE Session invalidated - AccessTokenExpired`` — Dovecot itself never
ends a session for its token; and, when asked, answers the commands after a
good sign-in with Exchange's "BAD User is authenticated but not connected"."""

from __future__ import annotations

import base64
import socket
import threading
import time
from typing import Callable

from leadtap.dovecot import free_port

BYE = b"* BYE Session invalidated - AccessTokenExpired\r\n"


class ExchangeLikeProxy:
    def __init__(self, upstream_port: int, expiry_of: Callable[[str], float | None], host: str = "127.0.0.1"):
        """``expiry_of``: a token's expiry (``time.time()`` seconds), or None."""
        self.upstream = (host, upstream_port)
        self.expiry_of = expiry_of
        self.port = free_port()
        self.cut = 0  # sessions ended at their token's expiry
        self.not_connected = 0  # the next sessions told "User is authenticated but not connected" after sign-in
        self.expire_at_fetch = 0  # the next sessions cut at their first FETCH, as if their token ran out then
        self.listener = socket.create_server((host, self.port))
        self.stopped = threading.Event()

    def __enter__(self) -> "ExchangeLikeProxy":
        threading.Thread(target=self.accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.listener.close()

    def accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self.pump, args=(server, client), daemon=True).start()
            threading.Thread(target=self.from_client, args=(client, server), daemon=True).start()

    def pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        close(source, target)

    def from_client(self, client: socket.socket, server: socket.socket) -> None:
        """Forwards line by line; the line after ``AUTHENTICATE XOAUTH2|OAUTHBEARER`` carries the token."""
        reader = client.makefile("rb")
        authenticating = stranded = False
        try:
            for line in reader:
                if stranded:  # Exchange's answer when the mailbox behind a good token cannot be reached
                    client.sendall(line.split(b" ")[0] + b" BAD User is authenticated but not connected.\r\n")
                    continue
                if self.expire_at_fetch > 0 and b" FETCH " in line.upper():
                    self.expire_at_fetch -= 1
                    self.cut += 1
                    client.sendall(BYE)
                    break
                server.sendall(line)
                if authenticating:
                    self.watch_expiry(token_of(line), client, server)
                    if self.not_connected > 0:
                        self.not_connected -= 1
                        stranded = True
                        time.sleep(0.2)  # the server's OK to AUTHENTICATE goes through first
                authenticating = b" AUTHENTICATE " in line.upper()
        except OSError:
            pass
        close(client, server)

    def watch_expiry(self, token: str | None, client: socket.socket, server: socket.socket) -> None:
        expires = self.expiry_of(token) if token else None
        if expires is None:
            return

        def cut() -> None:
            time.sleep(max(expires - time.time(), 0))
            try:
                client.sendall(BYE)
                self.cut += 1
            except OSError:
                return
            close(client, server)

        threading.Thread(target=cut, daemon=True).start()


def token_of(line: bytes) -> str | None:
    try:
        fields = base64.b64decode(line.strip()).decode().split("\x01")
    except ValueError:
        return None
    return next((f[len("auth=Bearer "):] for f in fields if f.startswith("auth=Bearer ")), None)


def close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
