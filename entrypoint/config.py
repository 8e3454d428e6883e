"""Configuration objects, built once at the edge (click options and environment variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from entrypoint.errors import ServerNotFound

DEFAULT_CERT_NAME = "STAR.iklim.co.full.crt"
DEFAULT_KEY_NAME = "STAR.iklim.co_key.pem"

# The wrapper's own settings: never passed on to the server's environment.
WRAPPER_ENV_PREFIX = "VAULT_ENTRYPOINT_"
WRAPPER_ENV = frozenset(
    {
        "VAULT_BINARY",
        "VAULT_CONFIG_DIR",
        "VAULT_CERTS_DIR",
        "VAULT_TLS_CERT_NAME",
        "VAULT_TLS_KEY_NAME",
        "VAULT_UNSEAL_KEY_FILE",
        "VAULT_ADDR",
        "VAULT_CACERT",
        "VAULT_TLS_SERVER_NAME",
        "VAULT_SKIP_VERIFY",
        # OpenBao reads these as an extra server config file: the listener would be declared
        # twice and the server dies with "bind: address already in use".
        "VAULT_CONFIG_PATH",
        "BAO_CONFIG_PATH",
        # Key material or credentials the server has no use for.
        "VAULT_UNSEAL_KEY",
        "VAULT_TOKEN",
        "BAO_TOKEN",
    }
)


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the server starts with: ours minus the wrapper's settings and secrets."""
    return {
        k: v
        for k, v in environ.items()
        if k not in WRAPPER_ENV and not k.startswith(WRAPPER_ENV_PREFIX) and "UNSEAL" not in k
    }


def _which(name: str) -> str | None:
    """``shutil.which`` without its imports (they cost milliseconds before the spawn)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def resolve_binary(name: str) -> str:
    """``vault`` by default, falling back to ``bao`` when only that is on PATH."""
    if os.sep in name:
        return name
    found = _which(name)
    if found:
        return found
    if name == "vault":
        fallback = _which("bao")
        if fallback:
            return fallback
    raise ServerNotFound(f"server binary {name!r} not found on PATH (set VAULT_BINARY)")


@dataclass(frozen=True)
class RunConfig:
    binary: str
    config_path: str
    certs_dir: Path
    cert_name: str
    key_name: str
    unseal_key_file: Path
    addr: str
    cacert: Path | None
    tls_server_name: str | None
    skip_verify: bool
    certs_wait: float = 120.0
    cert_warn_days: float = 14.0
    stop_grace: float = 25.0
    retry_max_wait: float = 5.0
    rejected_backoff: float = 30.0
    watch_interval: float = 10.0
    cert_poll_interval: float = 10.0
    reload_confirm_timeout: float = 30.0
    reunseal: bool = False
    server_args: tuple[str, ...] = field(default_factory=tuple)

    def server_argv(self) -> list[str]:
        return [self.binary, "server", f"-config={self.config_path}", *self.server_args]
