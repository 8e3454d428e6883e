"""The ``reloader`` and ``distributor`` commands: options onto a config object, then a plain call.

Kept light on purpose: docker, requests and the delivery modules load only when a command runs,
so ``vault-entrypoint run`` starts no slower for having them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from entrypoint.cli import ENV, option
from entrypoint.config import DEFAULT_CERT_NAME, DEFAULT_KEY_NAME

RELOADER_ENV = ENV + "RELOADER_"
DISTRIBUTOR_ENV = ENV + "DISTRIBUTOR_"
_DIR = click.Path(path_type=Path, file_okay=False)
_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command()
@option(
    "--source-cert",
    env=RELOADER_ENV + "SOURCE_CERT",
    default=None,
    type=_FILE,
    help="Renewed chain (leaf first) in SWAG's volume; symlinks are followed. "
    "[default: $RENEWED_LINEAGE/fullchain.pem when certbot sets it, else "
    "/config/keys/letsencrypt/fullchain.pem]",
)
@option(
    "--source-key",
    env=RELOADER_ENV + "SOURCE_KEY",
    default=None,
    type=_FILE,
    help="Its private key. [default: $RENEWED_LINEAGE/privkey.pem, else "
    "/config/keys/letsencrypt/privkey.pem]",
)
@option(
    "--dest-dir",
    env=RELOADER_ENV + "DEST_DIR",
    default="/mnt/storagebox/ssl",
    type=_DIR,
    help="Shared storage to publish to (never created: a missing mount is an error).",
)
@option(
    "--cert-name",
    env="VAULT_TLS_CERT_NAME",
    default=DEFAULT_CERT_NAME,
    help="Name of the published chain (mode 0644).",
)
@option(
    "--key-name",
    env="VAULT_TLS_KEY_NAME",
    default=DEFAULT_KEY_NAME,
    help="Name of the published key (mode 0600).",
)
@option(
    "--interval",
    env=RELOADER_ENV + "INTERVAL",
    default=30.0,
    type=click.FloatRange(min=0.05),
    help="Seconds between polls of the source.",
)
@option(
    "--settle",
    env=RELOADER_ENV + "SETTLE",
    default=2.0,
    type=click.FloatRange(min=0),
    help="Seconds the source must stay unchanged before it is validated.",
)
@option(
    "--allow-downgrade",
    env=RELOADER_ENV + "ALLOW_DOWNGRADE",
    is_flag=True,
    default=False,
    help="Publish a certificate that expires before the published one.",
)
@option(
    "--once",
    env=RELOADER_ENV + "ONCE",
    is_flag=True,
    default=False,
    help="Publish once and exit (a certbot deploy hook); non-zero when nothing could be published.",
)
def reloader(
    source_cert: Path | None,
    source_key: Path | None,
    dest_dir: Path,
    cert_name: str,
    key_name: str,
    interval: float,
    settle: float,
    allow_downgrade: bool,
    once: bool,
) -> None:
    """Publish a renewed certificate pair from SWAG to shared storage.

    Polls the source (network mounts deliver no inotify events), detects a change by content
    (leaf fingerprint and file hashes, not timestamps), lets it settle, validates it (parses,
    leaf first, key matches, currently valid, not older than the published one) and replaces
    the published files atomically, the manifest last. SIGTERM stops it cleanly.

    \b
    Exit codes with --once: 0 published or already up to date, 65 invalid pair or
    downgrade refused, 66 source missing or still changing, 69 destination unavailable.
    """
    from entrypoint import reloader as impl

    cert, key = impl.resolve_sources(source_cert, source_key, os.environ)
    cfg = impl.ReloaderConfig(
        source_cert=cert,
        source_key=key,
        dest_dir=dest_dir,
        cert_name=cert_name,
        key_name=key_name,
        interval=interval,
        settle=settle,
        allow_downgrade=allow_downgrade,
        once=once,
    )
    sys.exit(impl.run(cfg))


@click.command()
@option(
    "--source-dir",
    env=DISTRIBUTOR_ENV + "SOURCE_DIR",
    default="/mnt/storagebox/ssl",
    type=_DIR,
    help="Shared storage the reloader publishes to.",
)
@option(
    "--dest-dir",
    env=DISTRIBUTOR_ENV + "DEST_DIR",
    default="/opt/iklimco/ssl",
    type=_DIR,
    help="Node-local dir Vault mounts; the stable names become links into the current generation.",
)
@option(
    "--cert-name",
    env="VAULT_TLS_CERT_NAME",
    default=DEFAULT_CERT_NAME,
    help="Name of the certificate chain file.",
)
@option(
    "--key-name",
    env="VAULT_TLS_KEY_NAME",
    default=DEFAULT_KEY_NAME,
    help="Name of the private key file.",
)
@option(
    "--vault-service",
    env=DISTRIBUTOR_ENV + "VAULT_SERVICE",
    default="iklimco_vault",
    help="Swarm service running Vault.",
)
@option(
    "--vault-reload",
    env=DISTRIBUTOR_ENV + "VAULT_RELOAD",
    default="restart",
    type=click.Choice(["restart", "sighup", "none"]),
    help="restart: one forced rolling update of the service per certificate (managers only); "
    "sighup: hot reload of this node's Vault containers; none: only install the files.",
)
@option(
    "--vault-addr",
    env="VAULT_ADDR",
    default="https://127.0.0.1:8200",
    help="Local Vault listener whose served certificate is checked; 'none' skips the check.",
)
@option(
    "--tls-server-name",
    env="VAULT_TLS_SERVER_NAME",
    default=None,
    help="SNI for the check [default: a name from the leaf's SANs].",
)
@option(
    "--interval",
    env=DISTRIBUTOR_ENV + "INTERVAL",
    default=60.0,
    type=click.FloatRange(min=0.05),
    help="Seconds between polls of the source.",
)
@option(
    "--check-timeout",
    env=DISTRIBUTOR_ENV + "CHECK_TIMEOUT",
    default=180.0,
    type=click.FloatRange(min=0),
    help="Seconds to wait for Vault to serve the installed certificate.",
)
@option(
    "--docker-timeout",
    env=DISTRIBUTOR_ENV + "DOCKER_TIMEOUT",
    default=30.0,
    type=click.FloatRange(min=1),
    help="Seconds to wait for one Docker Engine API answer.",
)
@option(
    "--key-owner",
    env=DISTRIBUTOR_ENV + "KEY_OWNER",
    default=None,
    help="UID[:GID] to own the installed key (mode 0600), e.g. the Vault container's user "
    "[default: the distributor's own user].",
)
@option(
    "--once",
    env=DISTRIBUTOR_ENV + "ONCE",
    is_flag=True,
    default=False,
    help="One pass, then exit; non-zero when anything failed.",
)
def distributor(
    source_dir: Path,
    dest_dir: Path,
    cert_name: str,
    key_name: str,
    vault_service: str,
    vault_reload: str,
    vault_addr: str,
    tls_server_name: str | None,
    interval: float,
    check_timeout: float,
    docker_timeout: float,
    key_owner: str | None,
    once: bool,
) -> None:
    """Install each new published certificate on this node and make Vault use it.

    A generation is installed only when both files match the published manifest and validate
    as a pair; it goes into a new versioned directory and one atomic symlink swap makes it
    current, so no reader ever sees a certificate beside a key of another generation. Then
    Vault is restarted (exactly once per certificate, recorded in a service label) or sent
    SIGHUP, and the certificate it serves is compared with the installed one. Failures are
    logged and retried at the next poll; the last good pair stays in place.

    \b
    Exit codes with --once: 0 done, 69 Docker unreachable, 13 Vault does not serve
    the installed certificate, 65 invalid pair, 66 nothing (complete) published yet.
    """
    from entrypoint import distributor as impl

    cfg = impl.DistributorConfig(
        source_dir=source_dir,
        dest_dir=dest_dir,
        cert_name=cert_name,
        key_name=key_name,
        vault_service=vault_service,
        vault_reload=impl.ReloadMode(vault_reload),
        vault_addr=None if vault_addr.strip().lower() in {"", "none", "off"} else vault_addr,
        tls_server_name=tls_server_name,
        interval=interval,
        check_timeout=check_timeout,
        docker_timeout=docker_timeout,
        key_owner=impl.parse_owner(key_owner),
        once=once,
    )
    sys.exit(impl.run(cfg))
