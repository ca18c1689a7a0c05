"""A small OAuth2 authorization server for the tests: a real HTTP server on
loopback with the token endpoint (client credentials, refresh with rotation,
RFC 7523 JWT bearer, device code, authorization code with PKCE), a device
authorization endpoint, an authorization endpoint that consents at once,
and RFC 7662 introspection for Dovecot's ``oauth2`` passdb.

Tokens are opaque and short-lived when a test asks (``lifetime``); a
rotated refresh token used again is ``invalid_grant``, as Microsoft and
Google do. Switches make it fail the way providers fail: down (503), slow,
or refusing every request with a given error."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class Client:
    secret: str | None
    mailboxes: set[str] = field(default_factory=set)  # what an app-only token may open (Add-MailboxPermission)


@dataclass
class Issued:
    username: str
    client_id: str
    scope: str
    expires: float


@dataclass
class AuthorizationServer:
    lifetime: float = 3600.0
    said_lifetime: float | None = None  # the expires_in given, when it is not the truth (a token revoked early)
    clients: dict[str, Client] = field(default_factory=dict)
    service_accounts: dict[str, str] = field(default_factory=dict)  # client_email → public key PEM
    down: bool = False
    slow: float = 0.0
    refuse_with: str | None = None  # every token request answered with this error
    authorize_as: str | None = None  # the person who consents at /authorize and at the device page
    echo: bool = False  # refusals repeat the request's form in their description (a careless provider)
    dribble: float = 0.0  # seconds between the bytes of each token answer
    gateway_errors: int = 0  # the next token requests answered by a gateway's HTML page (502)
    jwt_key: object | None = None  # an RSA private key: access tokens are JWTs it signs (RS256, kid "k1")
    rotate: bool = True
    requests: list[str] = field(default_factory=list)  # the grant_type of each token request
    secrets_seen: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.access: dict[str, Issued] = {}
        self.refresh: dict[str, Issued] = {}
        self.used_refresh: set[str] = set()
        self.devices: dict[str, dict] = {}
        self.codes: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    # --- life ------------------------------------------------------------------

    def start(self) -> "AuthorizationServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                server.handle(self, "POST")

            def do_GET(self):
                server.handle(self, "GET")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self) -> "AuthorizationServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    # --- what the tests arrange ---------------------------------------------------

    def add_client(self, client_id: str, secret: str | None = None, mailboxes=()) -> None:
        self.clients[client_id] = Client(secret, set(mailboxes))

    def count(self, grant_type: str) -> int:
        return sum(1 for g in self.requests if g == grant_type)

    def issue_refresh(self, username: str, client_id: str, scope: str) -> str:
        token = "rt-" + secrets.token_hex(16)
        self.refresh[token] = Issued(username, client_id, scope, time.time() + 90 * 86400)
        return token

    def revoke_all(self) -> None:
        with self.lock:
            self.access.clear()
            self.refresh.clear()

    def expire_access(self) -> None:
        with self.lock:
            for issued in self.access.values():
                issued.expires = 0

    # --- HTTP ------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(request.path).path
        if self.down:
            return self.answer(request, 503, {"error": "temporarily_unavailable"}, raw=b"<html>down</html>")
        if self.slow:
            time.sleep(self.slow)
        length = int(request.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(request.rfile.read(length).decode()).items()} if method == "POST" else {}
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        routes = {"/token": self.token, "/devicecode": self.device_code, "/introspect": self.introspect,
                  "/authorize": self.authorize, "/moved": self.moved}
        if path not in routes:
            return self.answer(request, 404, {"error": "not_found"})
        if path == "/token" and self.gateway_errors:
            self.gateway_errors -= 1
            return self.answer(request, 502, None, raw=b"<html>Bad Gateway</html>")
        status, body, headers = routes[path](form, query, request.headers)
        if status >= 400 and self.echo and isinstance(body, dict):
            body["error_description"] = f"{body.get('error_description', '')} request was: {urlencode(form)}"
        self.answer(request, status, body, headers=headers, dribble=self.dribble if path == "/token" else 0.0)

    def moved(self, form: dict, query: dict, headers) -> tuple:
        return 302, {}, {"Location": f"{self.url}/token"}

    def answer(self, request, status: int, body: dict | None, raw: bytes | None = None, headers=None,
               dribble: float = 0.0) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Type", "text/html" if raw is not None else "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        try:
            if not dribble:
                return request.wfile.write(data)
            for byte in data:
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
                time.sleep(dribble)
        except OSError:  # the client gave up
            pass

    # --- endpoints ---------------------------------------------------------------------

    def token(self, form: dict, query: dict, headers) -> tuple:
        grant_type = form.get("grant_type", "")
        with self.lock:
            self.requests.append(grant_type)
        if self.refuse_with:
            return 400, {"error": self.refuse_with, "error_description": "AADSTS7000215: refused for the test.\r\n"
                                                                        "Trace ID: 1234"}, None
        grants = {"client_credentials": self.client_credentials, "refresh_token": self.refresh_grant,
                  "urn:ietf:params:oauth:grant-type:jwt-bearer": self.jwt_bearer,
                  "urn:ietf:params:oauth:grant-type:device_code": self.device_grant,
                  "authorization_code": self.code_grant}
        if grant_type not in grants:
            return 400, {"error": "unsupported_grant_type"}, None
        with self.lock:
            return grants[grant_type](form, headers)

    def client_of(self, form: dict, headers) -> tuple[str | None, dict | None]:
        """The authenticated client's id, or the error answer."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if secret:
            self.secrets_seen.append(secret)
        client = self.clients.get(client_id or "")
        if client is None:
            return None, {"error": "invalid_client", "error_description": "AADSTS700016: Application not found."}
        if client.secret is not None and secret != client.secret:
            return None, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        return client_id, None

    def client_credentials(self, form: dict, headers) -> tuple:
        client_id, error = self.client_of(form, headers)
        if error:
            return 401, error, None
        mailboxes = sorted(self.clients[client_id].mailboxes)
        return 200, self.tokens(mailboxes[0] if mailboxes else "", client_id, form.get("scope", ""), refresh=False), None

    def refresh_grant(self, form: dict, headers) -> tuple:
        client_id, error = self.client_of(form, headers)
        if error:
            return 401, error, None
        old = form.get("refresh_token", "")
        issued = self.refresh.get(old)
        if issued is None or old in self.used_refresh or issued.client_id != client_id:
            return 400, {"error": "invalid_grant", "error_description":
                         "AADSTS70008: The provided authorization code or refresh token has expired."}, None
        if self.rotate:
            self.used_refresh.add(old)
            del self.refresh[old]
        return 200, self.tokens(issued.username, client_id, issued.scope, refresh=self.rotate), None

    def jwt_bearer(self, form: dict, headers) -> tuple:
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import RSAKey

        assertion = form.get("assertion", "")
        try:
            unverified = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
            key = RSAKey.import_key(self.service_accounts[unverified["iss"]])
            claims = jwt.decode(assertion, key, algorithms=["RS256"]).claims
            jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
        except (KeyError, ValueError, IndexError, JoseError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, None
        if claims.get("aud") != self.token_url or not claims.get("sub") or claims["exp"] - claims["iat"] > 3600:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT claims."}, None
        return 200, self.tokens(claims["sub"], claims["iss"], claims.get("scope", ""), refresh=False), None

    def device_code(self, form: dict, query: dict, headers) -> tuple:
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return 400, {"error": "invalid_client"}, None
        device, user = secrets.token_hex(16), secrets.token_hex(4).upper()
        with self.lock:
            self.devices[device] = {"client_id": client_id, "scope": form.get("scope", ""), "user_code": user,
                                    "polls": 0}
        return 200, {"device_code": device, "user_code": user, "verification_uri": f"{self.url}/device",
                     "expires_in": 900, "interval": 1,
                     "message": f"To sign in, open {self.url}/device and enter the code {user}."}, None

    def device_grant(self, form: dict, headers) -> tuple:
        device = self.devices.get(form.get("device_code", ""))
        if device is None:
            return 400, {"error": "expired_token"}, None
        device["polls"] += 1
        if self.authorize_as is None or device["polls"] < 2:
            return 400, {"error": "authorization_pending"}, None
        del self.devices[form["device_code"]]
        return 200, self.tokens(self.authorize_as, device["client_id"], device["scope"], refresh=True), None

    def authorize(self, form: dict, query: dict, headers) -> tuple:
        code = secrets.token_hex(12)
        with self.lock:
            self.codes[code] = {"client_id": query.get("client_id"), "challenge": query.get("code_challenge"),
                                "redirect_uri": query.get("redirect_uri"), "scope": query.get("scope", "")}
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        return 302, {}, {"Location": target}

    def code_grant(self, form: dict, headers) -> tuple:
        client_id, error = self.client_of(form, headers)
        if error:
            return 401, error, None
        code = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if code is None or code["challenge"] != challenge or code["redirect_uri"] != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "code or verifier does not match"}, None
        return 200, self.tokens(self.authorize_as or "", client_id, code["scope"], refresh=True), None

    def introspect(self, form: dict, query: dict, headers) -> tuple:
        issued = self.access.get(form.get("token", ""))
        if issued is None or issued.expires < time.time():
            return 200, {"active": False}, None
        return 200, {"active": True, "username": issued.username, "client_id": issued.client_id}, None

    def jwt_public_key(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self.jwt_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def signed(self, username: str, client_id: str, scope: str) -> str:
        from cryptography.hazmat.primitives import serialization
        from joserfc import jwt
        from joserfc.jwk import RSAKey

        now = int(time.time())
        claims = {"iss": self.url, "sub": username, "username": username, "client_id": client_id, "scope": scope,
                  "iat": now, "nbf": now, "exp": now + int(self.lifetime), "jti": secrets.token_hex(8)}
        pem = self.jwt_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": "k1"}, claims, RSAKey.import_key(pem))

    def tokens(self, username: str, client_id: str, scope: str, refresh: bool) -> dict:
        access = self.signed(username, client_id, scope) if self.jwt_key else "at-" + secrets.token_hex(16)
        self.access[access] = Issued(username, client_id, scope, time.time() + self.lifetime)
        body = {"access_token": access, "token_type": "Bearer", "expires_in": int(self.said_lifetime or self.lifetime)}
        if refresh:
            body["refresh_token"] = self.issue_refresh(username, client_id, scope)
        return body
