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

from leadtap.core.errors import TokenKeyError

VERSION = b"\x01"


class TokenCipher:
    def __init__(self, key_text: str):
        """``key_text``: ``[oauth2]``'s token key, its length checked where it is read (a ConfigError)."""
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"leadtap oauth2 tokens").derive(key_text.strip().encode())
        self.aead = AESGCM(derived)

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
