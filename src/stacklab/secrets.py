"""Secrets at rest: Fernet encryption with a key from configuration, and a masked wrapper for memory."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stacklab.errors import ConfigError


class Secret:
    """A string whose repr and str never show it; call `reveal()` at the point of use."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


MIN_PASSPHRASE_CHARS = 16
MAKE_KEY_HINT = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def fernet_key(secret_key: str) -> bytes:
    """The Fernet key a secret_key stands for: a Fernet key as it is (what earlier versions stored data
    with), any other string of 16 characters or more through HKDF-SHA256 (deterministic: the same string
    always opens the same data), so that deployment tools may hand over any long random string."""
    try:
        Fernet(secret_key.encode())
        return secret_key.encode()
    except (ValueError, TypeError):
        pass
    if len(secret_key) < MIN_PASSPHRASE_CHARS:
        raise ConfigError(
            f"secret_key: too short ({len(secret_key)} characters): give a Fernet key or any string of "
            f"{MIN_PASSPHRASE_CHARS} characters or more; {MAKE_KEY_HINT}"
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"stacklab secret_key", info=b"fernet")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


class Vault:
    """Encrypts and decrypts small secrets (private keys, passwords) for the store."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()
        self._fernet = Fernet(fernet_key(key))

    def derive(self, purpose: str) -> str:
        """A separate key for another purpose (such as signing tokens): one key never serves two uses."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, secret: Secret) -> bytes:
        return self._fernet.encrypt(secret.reveal().encode())

    def decrypt(self, token: bytes) -> Secret:
        try:
            return Secret(self._fernet.decrypt(token).decode())
        except InvalidToken as exc:
            raise ConfigError("a stored secret cannot be decrypted: was secret_key changed?") from exc


def load_or_create_key(configured: str, data_dir: str) -> str:
    """The configured key, or the embedded default's key file (created 0600 on first run)."""
    if configured:
        return configured
    path = Path(data_dir) / "secret.key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
