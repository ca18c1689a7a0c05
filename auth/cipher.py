"""Tokens encrypted at rest: AES-256-GCM under a key derived (HKDF-SHA256)
from the operator's key file, each ciphertext bound to its sign-in (the
credential is the associated data), so a row copied onto another sign-in
does not decrypt."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from leadtap.core.config.oauth2 import MIN_KEY_CHARS
from leadtap.core.errors import ConfigError, TokenKeyError

VERSION = b"\x01"


class TokenCipher:
    def __init__(self, key_text: str):
        if len(key_text.strip()) < MIN_KEY_CHARS:
            raise TokenKeyError(f"the token key is {len(key_text.strip())} characters; at least {MIN_KEY_CHARS} "
                                "are expected (make one with: openssl rand -base64 32)")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"leadtap oauth2 tokens").derive(key_text.strip().encode())
        self.aead = AESGCM(derived)

    @classmethod
    def from_secret(cls, secret) -> "TokenCipher":
        """From ``[oauth2] token_key_file``: a ConfigError names the key when it cannot be read."""
        try:
            return cls(secret.reveal())
        except ConfigError:
            raise
        except TokenKeyError as exc:
            raise TokenKeyError(f"[oauth2] token key: {exc}") from None

    def seal(self, plaintext: str, credential: str) -> bytes:
        nonce = os.urandom(12)
        return VERSION + nonce + self.aead.encrypt(nonce, plaintext.encode(), credential.encode())

    def open(self, sealed: bytes, credential: str) -> str:
        if not sealed.startswith(VERSION) or len(sealed) < 1 + 12 + 16:
            raise TokenKeyError("a stored token is not in leadtap's format")
        try:
            return self.aead.decrypt(sealed[1:13], sealed[13:], credential.encode()).decode()
        except InvalidTag:
            raise TokenKeyError("a stored token does not open with [oauth2] token key: the key changed since "
                                "it was stored; sign in again (leadtap auth login) or restore the key") from None
