"""Typed errors raised deep in the package; only the CLI turns them into exit codes."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of the wrapper's own failures (a supervised server's code passes through)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    HEALTH_SEALED = 10
    HEALTH_NOT_INITIALIZED = 11
    HEALTH_UNREACHABLE = 12
    HEALTH_TLS = 13
    UNSEAL_KEY = 20
    CERT_EXPIRING = 30
    CERT_INVALID = 65
    CERT_MISSING = 66
    UNAVAILABLE = 69
    CONFIG = 78
    SERVER_NOT_FOUND = 127


class EntrypointError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE


class ConfigError(EntrypointError):
    exit_code = ExitCode.CONFIG


class ServerNotFound(EntrypointError):
    exit_code = ExitCode.SERVER_NOT_FOUND


class CertificateError(EntrypointError):
    """A certificate or key that must not be served."""

    exit_code = ExitCode.CERT_INVALID


class CertificateMissing(CertificateError):
    exit_code = ExitCode.CERT_MISSING


class CertificateParseError(CertificateError):
    pass


class ChainOrderError(CertificateError):
    pass


class CertificateMismatch(CertificateError):
    pass


class CertificateNotCurrentlyValid(CertificateError):
    pass


class UnsealError(EntrypointError):
    exit_code = ExitCode.UNSEAL_KEY


class UnsealKeyUnavailable(UnsealError):
    """The secret file is missing, empty, unreadable or holds no key."""


class UnsealKeyRejected(UnsealError):
    """Vault refused the key material (never carries the key itself)."""


class NotEnoughShares(UnsealError):
    """The secret holds fewer shares than Vault's threshold."""


class VaultError(EntrypointError):
    exit_code = ExitCode.UNAVAILABLE


class VaultUnreachable(VaultError):
    exit_code = ExitCode.HEALTH_UNREACHABLE


class VaultTLSError(VaultError):
    """The server's certificate did not verify: it gets no key."""

    exit_code = ExitCode.HEALTH_TLS


class VaultNotInitialized(VaultError):
    exit_code = ExitCode.HEALTH_NOT_INITIALIZED


class VaultSealed(VaultError):
    exit_code = ExitCode.HEALTH_SEALED


class UnsealPending(VaultSealed):
    """Vault took every share without an error and is still sealed: a raft follower that has
    just joined is catching up. Not a rejected key."""


# --- certificate delivery (reloader and distributor) ---------------------------------------


class DowngradeRefused(CertificateError):
    """The candidate certificate expires before the one already published."""


class SourceNotReady(EntrypointError):
    """The source is missing, still changing, or holds a half-written generation."""

    exit_code = ExitCode.CERT_MISSING


class DestinationUnavailable(EntrypointError):
    """The destination directory is missing or cannot be written; nothing was published."""

    exit_code = ExitCode.UNAVAILABLE


class DockerUnavailable(EntrypointError):
    """The Docker engine does not answer, or refused the request."""

    exit_code = ExitCode.UNAVAILABLE


class ServiceUpdateConflict(DockerUnavailable):
    """Swarm answered "update out of sequence": someone else updated the service first."""


class ServedCertificateMismatch(EntrypointError):
    """Vault does not (yet) serve the certificate that was installed."""

    exit_code = ExitCode.HEALTH_TLS
