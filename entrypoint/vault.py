"""Talking to the local Vault through hvac, with TLS verified against our own CA and name.

Vault's listener is reached on 127.0.0.1, but its certificate names the public host; we verify
the certificate against the configured CA (or the chain beside it in the certs dir) and check
the name from ``VAULT_TLS_SERVER_NAME`` or the leaf's SAN, sent as SNI.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import requests
import requests.adapters

from entrypoint import files
from entrypoint.certs import CertPair, parse_chain
from entrypoint.errors import (
    CertificateError,
    ConfigError,
    UnsealKeyRejected,
    VaultTLSError,
    VaultUnreachable,
)
from entrypoint.keys import Secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VaultTarget:
    """How to reach and trust one Vault server."""

    addr: str
    cacert: Path | None = None
    server_name: str | None = None
    skip_verify: bool = False
    certs: CertPair | None = None
    timeout: float = 3.0

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.addr)
        if not parts.hostname:
            raise ConfigError(f"VAULT_ADDR {self.addr!r} has no host")
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host_port[0])
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class SealStatus:
    initialized: bool
    sealed: bool
    threshold: int
    shares: int
    progress: int
    version: str

    @classmethod
    def from_response(cls, doc: dict[str, Any]) -> SealStatus:
        return cls(
            initialized=bool(doc.get("initialized")),
            sealed=bool(doc.get("sealed", True)),
            threshold=int(doc.get("t") or 0),
            shares=int(doc.get("n") or 0),
            progress=int(doc.get("progress") or 0),
            version=str(doc.get("version", "")),
        )


class _PinnedTLSAdapter(requests.adapters.HTTPAdapter):
    """Verifies with our SSLContext only and checks an explicit server name (sent as SNI)."""

    def __init__(self, context: ssl.SSLContext, server_name: str | None) -> None:
        self._context = context
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        if self._server_name:
            kwargs["server_hostname"] = self._server_name
            kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        # requests would add certifi's public roots to our context; trust only our CA.
        conn.ca_certs = None
        conn.ca_cert_dir = None


def _ca_source(target: VaultTarget) -> Path:
    if target.cacert is not None:
        return target.cacert
    if target.certs is not None:
        return target.certs.cert
    raise ConfigError("no CA to verify Vault with: set VAULT_CACERT or VAULT_SKIP_VERIFY")


def read_ca(target: VaultTarget) -> bytes:
    """The PEM the server must chain to (retried by callers: the certs dir may be mid-swap)."""
    path = _ca_source(target)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VaultTLSError(f"CA file {path} cannot be read: {exc.strerror}") from None


def trust_context(target: VaultTarget, pem: bytes) -> ssl.SSLContext:
    """An SSLContext trusting only the given CA (or chain)."""
    try:
        parse_chain(pem, str(_ca_source(target)))
    except CertificateError as exc:
        raise VaultTLSError(f"CA file: {exc}") from None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=pem.decode("ascii"))
    # The chain beside the leaf may hold only intermediates: trust them as anchors.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


class Connector:
    """Builds hvac clients, rebuilt when the trusted CA file changes (after a cert rotation)."""

    def __init__(self, target: VaultTarget, server_name: str | None = None) -> None:
        self.target = target
        self._default_server_name = server_name
        self._client: hvac.Client | None = None
        self._ca_digest: str | None = None

    @property
    def server_name(self) -> str | None:
        if self.target.server_name:
            return self.target.server_name
        return self._default_server_name if self.target.host_is_ip else None

    def set_default_server_name(self, name: str | None) -> None:
        if name != self._default_server_name:
            self._default_server_name = name
            self._client = None

    def client(self) -> hvac.Client:
        session = None
        if self.target.skip_verify:
            if self._client is not None:
                return self._client
        else:
            # Re-read on every call (cheap), rebuild only when the trusted CA changed.
            pem = read_ca(self.target)
            ca_digest = files.digest([pem])
            if self._client is not None and ca_digest == self._ca_digest:
                return self._client
            context = trust_context(self.target, pem)
            self._ca_digest = ca_digest
            session = requests.Session()
            session.mount("https://", _PinnedTLSAdapter(context, self.server_name))
        if session is None:
            session = requests.Session()
        session.trust_env = False  # the host's REQUESTS_CA_BUNDLE and proxies do not apply
        # hvac takes `verify` from a given session, not from its own argument.
        session.verify = not self.target.skip_verify
        self._client = hvac.Client(
            url=self.target.addr,
            token="",  # seal status and unseal need none; never pick one up from the env
            session=session,
            verify=not self.target.skip_verify,
            timeout=self.target.timeout,
        )
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = fn(*args, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise VaultTLSError(f"{what}: TLS verification failed: {_reason(exc)}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise VaultUnreachable(f"{what}: {_reason(exc)}") from None
        except hvac.exceptions.InvalidRequest as exc:
            raise UnsealKeyRejected(
                f"{what}: {', '.join(exc.errors or [str(exc.args[0])])}"
            ) from None
        except hvac.exceptions.VaultError as exc:
            raise VaultUnreachable(f"{what}: {type(exc).__name__}: {exc.args[0]}") from None
        if not isinstance(result, dict):
            raise VaultUnreachable(f"{what}: unexpected response {type(result).__name__}")
        return result

    def seal_status(self) -> SealStatus:
        client = self.client()
        return SealStatus.from_response(self._call("seal-status", client.sys.read_seal_status))

    def reset_unseal(self) -> SealStatus:
        client = self.client()
        doc = self._call("unseal reset", client.sys.submit_unseal_key, reset=True)
        return SealStatus.from_response(doc)

    def submit_share(self, share: Secret) -> SealStatus:
        client = self.client()
        doc = self._call("unseal", client.sys.submit_unseal_key, key=share.reveal())
        return SealStatus.from_response(doc)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, without the wrappers' noise."""
    inner = exc
    for _ in range(8):
        nested = getattr(inner, "reason", None)
        if not isinstance(nested, BaseException) and inner.args:
            nested = inner.args[0] if isinstance(inner.args[0], BaseException) else None
        nested = nested if isinstance(nested, BaseException) else inner.__cause__
        if nested is None or nested is inner:
            break
        inner = nested
    if isinstance(inner, ssl.SSLCertVerificationError) and inner.verify_message:
        return inner.verify_message
    text = str(inner)
    if "Connection refused" in text:
        return "connection refused"
    return text[:300]
