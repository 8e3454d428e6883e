"""Unseal key material: a secret type that never prints itself, and the secret-file formats."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import string
from pathlib import Path
from typing import Any, NoReturn

from entrypoint import logs
from entrypoint.errors import UnsealKeyUnavailable

_HEX = frozenset(string.hexdigits)
_JSON_KEY_FIELDS = ("unseal_keys_b64", "keys_base64", "keys", "unseal_keys_hex")


class Secret:
    """A string whose repr, str and pickle never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        logs.register_secret(*_printed_forms(value))

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return logs.REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def _decode(share: str) -> bytes | None:
    if len(share) % 2 == 0 and set(share) <= _HEX:
        return bytes.fromhex(share)
    try:
        return base64.b64decode(share + "=" * (-len(share) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _printed_forms(share: str) -> list[str]:
    """The share and the other encodings of the same bytes that a tool might print."""
    forms = [share]
    raw = _decode(share)
    if raw:
        b64 = base64.b64encode(raw).decode()
        forms += [raw.hex(), raw.hex().upper(), b64, b64.rstrip("=")]
    return forms


def _invalid(reason: str) -> UnsealKeyUnavailable:
    return UnsealKeyUnavailable(reason)


def _shares_from_json(text: str) -> list[str]:
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        # The decoder's message can quote the document; say only where it broke.
        raise _invalid("secret file looks like JSON but does not parse") from None
    if not isinstance(doc, dict):
        raise _invalid("secret JSON is not an object")
    for field in _JSON_KEY_FIELDS:
        value = doc.get(field)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value]
    raise _invalid(
        "secret JSON has no key list (expected unseal_keys_b64 or keys_base64, "
        "as printed by 'operator init -format=json')"
    )


def parse_key_material(text: str) -> tuple[Secret, ...]:
    """Parse one key, several keys one per line, or the JSON of ``operator init``."""
    text = text.strip()
    if not text:
        raise _invalid("secret file is empty")
    if text.startswith("{"):
        shares = _shares_from_json(text)
    else:
        shares = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    # Register first so that even a rejected line cannot be printed later.
    secrets = tuple(Secret(s) for s in shares)
    for number, share in enumerate(shares, start=1):
        if not share or _decode(share) is None:
            raise _invalid(f"key line {number} is neither base64 nor hex")
    if not secrets:
        raise _invalid("secret file holds no key (only comments or blank lines)")
    return secrets


def read_key_file(path: Path) -> tuple[Secret, ...]:
    """Read the secret file fresh; every failure is an ``UnsealKeyUnavailable``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _invalid(f"secret file {path} does not exist") from None
    except IsADirectoryError:
        raise _invalid(f"secret file {path} is a directory") from None
    except PermissionError:
        raise _invalid(f"secret file {path} is not readable by uid {os.getuid()}") from None
    except UnicodeDecodeError:
        raise _invalid(f"secret file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise _invalid(f"secret file {path} cannot be read: {exc.strerror}") from None
    return parse_key_material(text)
