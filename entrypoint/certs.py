"""Certificate and key inspection (cryptography): the preflight checks and the served-cert probe."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from entrypoint.errors import (
    CertificateMismatch,
    CertificateMissing,
    CertificateNotCurrentlyValid,
    CertificateParseError,
    ChainOrderError,
    ServedCertificateMismatch,
)

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class CertPair:
    """Where a certificate chain (leaf first) and its key live."""

    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: Path, cert_name: str, key_name: str) -> CertPair:
        return cls(directory / cert_name, directory / key_name)


@dataclass(frozen=True)
class CertInfo:
    """What an operator wants to know about a validated pair."""

    subject: str
    issuer: str
    sans: tuple[str, ...]
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    chain_length: int

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def log_fields(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "sans": ",".join(self.sans) or "-",
            "not_after": self.not_after.isoformat(),
            "sha256": self.fingerprint,
            "chain": self.chain_length,
        }

    def server_name(self) -> str | None:
        """A concrete DNS name the leaf is valid for (a wildcard gets a label filled in)."""
        for san in self.sans:
            if san.startswith("*."):
                return "vault" + san[1:]
            if san and not _is_ip(san):
                return san
        return None


def _is_ip(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        return False
    return True


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    names: list[str] = []
    for general_name in ext.value:
        if isinstance(general_name, (x509.DNSName, x509.IPAddress)):
            names.append(str(general_name.value))
    return tuple(names)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        ext = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return ext.value.ca


def parse_chain(cert_pem: bytes, label: str = "certificate") -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise CertificateParseError(f"{label} does not hold a PEM certificate chain") from None
    if not chain:
        raise CertificateParseError(f"{label} holds no certificate")
    return chain


def _load_key(key_pem: bytes, label: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateParseError(
            f"{label} is encrypted; Vault needs an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # Never chain the parser's error: it is about key bytes.
        raise CertificateParseError(f"{label} does not hold a PEM private key") from None


def validate_pair(
    cert_pem: bytes,
    key_pem: bytes,
    now: dt.datetime | None = None,
    cert_label: str = "certificate",
    key_label: str = "key",
) -> CertInfo:
    """Check that the chain parses, the leaf comes first, the key matches it and it is valid now."""
    now = now or now_utc()
    chain = parse_chain(cert_pem, cert_label)
    private_key = _load_key(key_pem, key_label)
    key_spki = private_key.public_key().public_bytes(*_SPKI)
    leaf = chain[0]
    if leaf.public_key().public_bytes(*_SPKI) != key_spki:
        for position, other in enumerate(chain[1:], start=2):
            if other.public_key().public_bytes(*_SPKI) == key_spki:
                raise ChainOrderError(
                    f"{key_label} belongs to certificate #{position} of {cert_label}; "
                    "the leaf must come first"
                )
        raise CertificateMismatch(
            f"{key_label} does not match the leaf certificate "
            f"({leaf.subject.rfc4514_string()}) in {cert_label}"
        )
    if len(chain) > 1 and _is_ca(leaf):
        raise ChainOrderError(
            f"the first certificate of {cert_label} is a CA; the leaf must come first"
        )
    for position, (child, parent) in enumerate(itertools.pairwise(chain), start=1):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise ChainOrderError(
                f"certificate #{position} of {cert_label} is not issued by certificate "
                f"#{position + 1}; the chain must go leaf first, then each issuer"
            ) from None
    if now < leaf.not_valid_before_utc:
        raise CertificateNotCurrentlyValid(
            f"leaf in {cert_label} is not valid before {leaf.not_valid_before_utc.isoformat()}"
        )
    if now > leaf.not_valid_after_utc:
        raise CertificateNotCurrentlyValid(
            f"leaf in {cert_label} expired at {leaf.not_valid_after_utc.isoformat()}"
        )
    return CertInfo(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        sans=_sans(leaf),
        serial=leaf.serial_number,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint=fingerprint(leaf.public_bytes(serialization.Encoding.DER)),
        chain_length=len(chain),
    )


def read_pair(pair: CertPair) -> tuple[bytes, bytes]:
    """Read both files; a missing or unreadable one is ``CertificateMissing``."""
    contents = []
    for path in (pair.cert, pair.key):
        try:
            contents.append(path.read_bytes())
        except FileNotFoundError:
            raise CertificateMissing(f"{path} does not exist") from None
        except IsADirectoryError:
            raise CertificateMissing(f"{path} is a directory, not a file") from None
        except OSError as exc:
            raise CertificateMissing(f"{path} cannot be read: {exc.strerror}") from None
    return contents[0], contents[1]


def inspect_pair(pair: CertPair, now: dt.datetime | None = None) -> CertInfo:
    cert_pem, key_pem = read_pair(pair)
    return validate_pair(cert_pem, key_pem, now, str(pair.cert), str(pair.key))


def served_certificate(host: str, port: int, server_name: str | None, timeout: float) -> bytes:
    """The DER leaf a TLS server presents (no verification: the caller compares fingerprints)."""
    import ssl  # not on the path to spawning the server

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("server presented no certificate")
    return der


def served_info(der: bytes) -> tuple[str, dt.datetime]:
    cert = x509.load_der_x509_certificate(der)
    return fingerprint(der), cert.not_valid_after_utc


def await_served(
    host: str,
    port: int,
    server_name: str | None,
    sha256: str,
    not_after: dt.datetime | None,
    timeout: float,
    interval: float,
    sleep: Callable[[float], object],
    should_stop: Callable[[], bool],
) -> None:
    """Handshake (with SNI) until the server presents this leaf; else ``ServedCertificateMismatch``.

    The error names what was served last, for the log line.
    """
    import ssl

    from entrypoint import waits

    def compare() -> None:
        try:
            der = served_certificate(host, port, server_name, timeout=5.0)
        except (OSError, ssl.SSLError) as exc:
            raise ServedCertificateMismatch(
                f"{host}:{port} did not complete a handshake: {exc}"
            ) from None
        served_sha, served_not_after = served_info(der)
        if served_sha != sha256 or (not_after is not None and served_not_after != not_after):
            raise ServedCertificateMismatch(
                f"{host}:{port} serves sha256={served_sha} "
                f"not_after={served_not_after.isoformat()}, expected sha256={sha256}"
                + (f" not_after={not_after.isoformat()}" if not_after is not None else "")
            )

    polling = waits.until_deadline(
        timeout, interval, (ServedCertificateMismatch,), sleep, should_stop
    )
    for attempt in polling:
        with attempt:
            compare()
