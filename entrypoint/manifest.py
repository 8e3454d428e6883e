"""The published-state manifest: which pair was published, written beside the files, last.

The reloader writes it after both files are in place; the distributor installs a generation
only when both files match it. It holds hashes and public facts, never key material.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from entrypoint import files
from entrypoint.certs import CertInfo
from entrypoint.errors import SourceNotReady

MANIFEST_NAME = "cert-manifest.json"
FORMAT = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """One published generation: file names, their content hashes and the leaf's facts."""

    cert_name: str
    key_name: str
    cert_sha256: str
    key_sha256: str
    fingerprint: str
    not_after: dt.datetime
    published_at: dt.datetime

    @classmethod
    def describe(
        cls,
        cert_name: str,
        key_name: str,
        cert_pem: bytes,
        key_pem: bytes,
        info: CertInfo,
        now: dt.datetime,
    ) -> Manifest:
        return cls(
            cert_name=cert_name,
            key_name=key_name,
            cert_sha256=sha256(cert_pem),
            key_sha256=sha256(key_pem),
            fingerprint=info.fingerprint,
            not_after=info.not_after,
            published_at=now,
        )

    def matches(self, cert_pem: bytes, key_pem: bytes) -> bool:
        return sha256(cert_pem) == self.cert_sha256 and sha256(key_pem) == self.key_sha256

    def same_content(self, other: Manifest | None) -> bool:
        """The same pair of files (publication times may differ)."""
        return (
            other is not None
            and other.cert_sha256 == self.cert_sha256
            and other.key_sha256 == self.key_sha256
        )

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"format": FORMAT, **asdict(self)}
        doc["not_after"] = self.not_after.isoformat()
        doc["published_at"] = self.published_at.isoformat()
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, label: str = MANIFEST_NAME) -> Manifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError("unknown format")
            return cls(
                cert_name=str(doc["cert_name"]),
                key_name=str(doc["key_name"]),
                cert_sha256=str(doc["cert_sha256"]),
                key_sha256=str(doc["key_sha256"]),
                fingerprint=str(doc["fingerprint"]),
                not_after=_aware(doc["not_after"]),
                published_at=_aware(doc["published_at"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SourceNotReady(f"{label} is not a readable manifest") from None


def _aware(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("naive timestamp")
    return value


def read_manifest(directory: Path, name: str = MANIFEST_NAME) -> Manifest | None:
    """The manifest in ``directory``; None when there is none, ``SourceNotReady`` when garbled."""
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceNotReady(f"{path} cannot be read: {exc.strerror}") from None
    return Manifest.from_json(data, str(path))


def manifest_item(directory: Path, manifest: Manifest) -> tuple[Path, bytes, int]:
    """The manifest as an item for ``files.atomic_write_all`` (always the last one)."""
    return directory / MANIFEST_NAME, manifest.to_json(), files.CERT_MODE
