"""Real SMTP servers for the tests: aiosmtpd on a free loopback port, able to
refuse a recipient or drop the connection; and a server that never answers."""

from __future__ import annotations

import asyncio
import socket
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from aiosmtpd.controller import Controller

from leadtap.dovecot import free_port


class Recorder:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}  # recipient -> the answer to RCPT TO
        self.refuse_sender = ""  # an answer to every MAIL FROM, e.g. "553 5.7.1 not allowed"
        self.drop_after_each = False  # close the connection at the second MAIL of a session
        self.delay = 0.0  # seconds to wait before accepting each message

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_sender:
            return self.refuse_sender
        if self.drop_after_each and getattr(session, "sent_one", False):
            server.transport.close()
            return "421 4.3.2 closing the connection"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = message_from_bytes(envelope.content, policy=default)
        message["X-Test-Recipients"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        session.sent_one = True
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["X-Test-Recipients"]]


class OAuthRecorder(Recorder):
    """A Recorder that takes AUTH XOAUTH2 and OAUTHBEARER, checking each token
    with ``introspect`` (token → the user it was issued for, or None), as
    Exchange Online and Gmail do; a refused token gets Gmail's error
    challenge first, then 535."""

    def __init__(self, introspect):
        super().__init__()
        self.introspect = introspect
        self.signed_in: list[str] = []

    async def auth_XOAUTH2(self, server, args):
        return await self.check(server, args, user_field="user=")

    async def auth_OAUTHBEARER(self, server, args):
        return await self.check(server, args, user_field="a=")

    async def check(self, server, args, user_field: str):
        from base64 import b64decode

        from aiosmtpd.smtp import AuthResult

        answer = args[1] if len(args) > 1 else (await server.challenge_auth("")).decode()
        fields = b64decode(answer).decode().replace(",", "\x01").split("\x01")
        user = next((f[len(user_field):] for f in fields if f.startswith(user_field)), "")
        token = next((f[len("auth=Bearer "):] for f in fields if f.startswith("auth=Bearer ")), "")
        if token and self.introspect(token) == user:
            self.signed_in.append(user)
            return AuthResult(success=True, handled=False, auth_data=user)
        await server.challenge_auth('{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
        return AuthResult(success=False, handled=False)


class SmtpServer:
    def __init__(self, handler: Recorder | None = None):
        self.handler = handler or Recorder()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     auth_require_tls=not isinstance(self.handler, OAuthRecorder))

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages


class SilentServer:
    """Accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self.accept, daemon=True)

    def accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def __enter__(self) -> "SilentServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()
