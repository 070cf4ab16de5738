"""Device signing keys at rest: AES-256-GCM under a master key from the environment.

The service must hold each button's HMAC key to verify its presses, so keys cannot be stored
hashed; they are stored encrypted instead. ``qorgau devices provision`` writes the key file; the
service reads it with the same ``QORGAU_DEVICE_KEY_SECRET``. The file holds, per device, a random
96-bit nonce and the ciphertext of the key, with the device id as associated data (an entry
copied to another device does not decrypt). The AES key is derived from the secret with
HKDF-SHA256 and the file's random salt. A wrong secret or an edited entry is refused.

File format (JSON)::

    {"format": "qorgau-device-keys/1", "kdf": "hkdf-sha256", "cipher": "aes-256-gcm",
     "salt": "<base64>", "devices": {"btn-1": {"nonce": "<base64>", "ciphertext": "<base64>"}}}
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dispatch.signing import DeviceKey

__all__ = [
    "FORMAT",
    "MIN_SECRET_CHARS",
    "decrypt_device_keys",
    "encrypt_device_keys",
    "load_device_keys",
    "write_device_keys",
    "write_private",
]

FORMAT = "qorgau-device-keys/1"
MIN_SECRET_CHARS = 32
_INFO = b"qorgau device signing keys v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, *, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as e:
        msg = f"device key file: {what} is not base64"
        raise ValueError(msg) from e


def _aead(secret: str, salt: bytes) -> AESGCM:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
        msg = f"QORGAU_DEVICE_KEY_SECRET must be at least {MIN_SECRET_CHARS} characters (e.g. openssl rand -hex 32)"
        raise ValueError(msg)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(secret.encode())
    return AESGCM(key)


def _associated(device_id: str) -> bytes:
    return f"qorgau-device-key/{device_id}".encode()


def encrypt_device_keys(keys: Mapping[str, DeviceKey], secret: str) -> dict[str, Any]:
    """The key file's document for ``keys`` under ``secret`` (fresh salt and nonces)."""
    salt = secrets.token_bytes(16)
    aead = _aead(secret, salt)
    devices = {}
    for device_id, key in sorted(keys.items()):
        nonce = secrets.token_bytes(12)
        devices[device_id] = {
            "nonce": _b64(nonce),
            "ciphertext": _b64(aead.encrypt(nonce, key.secret, _associated(device_id))),
        }
    return {"format": FORMAT, "kdf": "hkdf-sha256", "cipher": "aes-256-gcm", "salt": _b64(salt), "devices": devices}


def decrypt_device_keys(doc: Mapping[str, Any], secret: str) -> dict[str, DeviceKey]:
    """The keys in a key file's document.

    Raises
    ------
    ValueError
        For another format, or when an entry does not decrypt (wrong secret, or edited).
    """
    if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, Mapping) else type(doc).__name__
        msg = f"not a Qorgau device key file: format {got!r}, expected {FORMAT!r}"
        raise ValueError(msg)
    aead = _aead(secret, _unb64(doc.get("salt"), what="salt"))
    devices = doc.get("devices")
    if not isinstance(devices, Mapping):
        msg = "device key file: 'devices' must be an object"
        raise ValueError(msg)
    keys = {}
    for device_id, entry in devices.items():
        if not isinstance(entry, Mapping):
            msg = f"device key file: the entry of device {device_id!r} must be an object"
            raise ValueError(msg)
        nonce = _unb64(entry.get("nonce"), what=f"the nonce of device {device_id!r}")
        ciphertext = _unb64(entry.get("ciphertext"), what=f"the ciphertext of device {device_id!r}")
        try:
            keys[device_id] = DeviceKey(aead.decrypt(nonce, ciphertext, _associated(device_id)))
        except InvalidTag as e:
            msg = (
                f"device key file: the key of device {device_id!r} does not decrypt: wrong "
                f"QORGAU_DEVICE_KEY_SECRET, or the file was edited"
            )
            raise ValueError(msg) from e
    return keys


def write_private(path: str | Path, text: str, *, mode: int = 0o600) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, fsync, rename), with ``mode``.

    The temporary file is created with ``mode`` already, so the content is never readable by others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # in case the umask took bits away
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def write_device_keys(path: str | Path, keys: Mapping[str, DeviceKey], secret: str) -> Path:
    """Encrypt ``keys`` under ``secret`` and write them atomically to ``path`` (mode 0600)."""
    return write_private(path, json.dumps(encrypt_device_keys(keys, secret), indent=1) + "\n")


def load_device_keys(path: str | Path, secret: str) -> dict[str, DeviceKey]:
    """Read and decrypt a key file written by :func:`write_device_keys`.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If it is not a key file, or does not decrypt with ``secret``.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        msg = f"device key file {str(path)!r} does not exist (qorgau devices provision writes it)"
        raise FileNotFoundError(msg) from e
    except json.JSONDecodeError as e:
        msg = f"device key file {str(path)!r} is not valid JSON: {e}"
        raise ValueError(msg) from e
    return decrypt_device_keys(doc, secret)
