"""``vault-entrypoint bootstrap``: initialize Vault once, keep the unseal key in a versioned Docker
secret mounted as ``vault_unseal_key``, and rotate it (``--rotate``) so that a working key is in
place at every step and a re-run finishes an interrupted job.

Order of the irreversible steps, and why:

* init: Docker, the token file and the backup dir are checked *before* Vault is initialized;
  all shares go to a 0600 backup before the secret is created, so the keys never live only in
  memory.
* rotate: rekey *with verification*: the old keys stay valid until the new shares are in the
  backup and in the new secret version, and are submitted back. Then the secret is swapped into
  the service, the replicas are awaited, and only then are old versions removed.

hvac, requests and docker load only when the command runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from entrypoint import files, logs
from entrypoint.errors import (
    ConfigError,
    EntrypointError,
    ExitCode,
    UnsealKeyRejected,
    VaultError,
    VaultNotInitialized,
    VaultSealed,
    VaultUnreachable,
)
from entrypoint.keys import Secret, read_key_file
from entrypoint.keystore import (
    SECRET_TARGET,
    SecretStoreFailed,
    SecretVersion,
    backup_path,
    create_secret,
    find_service,
    mounted_secret,
    next_secret_name,
    remove_secret,
    remove_unused,
    secret_versions,
    swap_secret,
    swarm_manager,
    wait_replicas,
)

if TYPE_CHECKING:
    from entrypoint.vault import Connector, SealStatus

log = logging.getLogger(__name__)

# Docker's rule for object names, and its 64-character limit with the "-YYYYmmddHHMMSS" suffix.
_SECRET_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,47}[a-zA-Z0-9])?$")


class RotationFailed(EntrypointError):
    """A rotation step failed; the message says which key is in force."""

    exit_code = ExitCode.UNSEAL_KEY


@dataclass(frozen=True)
class BootstrapConfig:
    target: Any  # entrypoint.vault.VaultTarget (loaded lazily)
    backup_dir: Path
    shares: int | None = None
    threshold: int | None = None
    secret_prefix: str = SECRET_TARGET
    service: str = "iklimco_vault"
    root_token_file: Path | None = None
    print_root_token: bool = False
    rotate: bool = False
    unseal_key_file: Path | None = None
    token_file: Path | None = None
    adopt_key_file: Path | None = None
    wait: float = 120.0
    unseal_wait: float = 300.0
    docker_timeout: float = 30.0
    poll_interval: float = 1.0


@dataclass
class Outcome:
    """What the command did, for the summary it prints."""

    lines: list[str] = field(default_factory=list)
    root_token: Secret | None = None

    def say(self, text: str) -> None:
        self.lines.append(text)


# --- key material -------------------------------------------------------------------------


def secret_payload(shares: tuple[Secret, ...], threshold: int) -> bytes:
    """What the Docker secret holds: the threshold's shares, one per line."""
    return "".join(f"{s.reveal()}\n" for s in shares[:threshold]).encode()


def backup_payload(shares: tuple[Secret, ...], threshold: int, name: str) -> bytes:
    header = f"# unseal key shares of secret {name}: {threshold} of {len(shares)} unseal Vault\n"
    return (header + "".join(f"{s.reveal()}\n" for s in shares)).encode()


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 with ``data``; never overwrite (a key file is never clobbered)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, files.KEY_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    files.fsync_dir(path.parent)


def check_prefix(prefix: str) -> None:
    if not _SECRET_NAME.match(prefix):
        raise ConfigError(
            f"secret prefix {prefix!r} is not a valid Docker name (letters, digits, '_', '.', "
            "'-'; at most 49 characters)"
        )


def check_dir_writable(directory: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"backup dir {directory} is not writable: {exc.strerror}") from None


@contextlib.contextmanager
def reserved_token_file(path: Path | None) -> Iterator[Callable[[Secret], None]]:
    """Create the token file (empty, 0600) up front; yields a writer; removed if never written."""
    if path is None:
        yield lambda token: None
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, files.KEY_MODE)
    except FileExistsError:
        raise ConfigError(
            f"root token file {path} already exists; it is never overwritten"
        ) from None
    except OSError as exc:
        raise ConfigError(f"root token file {path} cannot be created: {exc.strerror}") from None
    written = False

    def write(token: Secret) -> None:
        nonlocal written
        os.write(fd, f"{token.reveal()}\n".encode())
        os.fsync(fd)
        written = True

    try:
        yield write
    finally:
        os.close(fd)
        if not written:
            path.unlink(missing_ok=True)


# --- Vault: init and key rotation over hvac -----------------------------------------------


def _vault_call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One hvac call; errors become typed errors without request bodies (they hold keys)."""
    import hvac.exceptions
    import requests

    from entrypoint.errors import VaultTLSError

    try:
        result = fn(*args, **kwargs)
    except requests.exceptions.SSLError:
        raise VaultTLSError(f"{what}: TLS verification failed") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise VaultUnreachable(f"{what}: {type(exc).__name__}") from None
    except hvac.exceptions.InvalidRequest as exc:
        raise UnsealKeyRejected(f"{what}: {_errors(exc)}") from None
    except hvac.exceptions.Forbidden:
        raise ConfigError(
            f"{what}: permission denied (give a token with sudo on sys/rotate)"
        ) from None
    except hvac.exceptions.VaultError as exc:
        raise VaultUnreachable(f"{what}: {type(exc).__name__}: {_errors(exc)}") from None
    if isinstance(result, dict):
        return result
    return {}  # 204 No Content


def _errors(exc: Any) -> str:
    errors = getattr(exc, "errors", None) or [str(exc.args[0]) if exc.args else ""]
    return logs.redact(", ".join(str(e) for e in errors))[:300]


def wait_listening(connector: Connector, deadline: float, poll: float) -> SealStatus:
    from entrypoint import waits
    from entrypoint.errors import VaultTLSError

    # A listener that is still starting (or a published port with no server behind it yet)
    # drops the handshake: retried too, and reported as it was when the deadline passes.
    retry_on = (VaultUnreachable, VaultTLSError)
    for attempt in waits.until_deadline(deadline, poll, retry_on, time.sleep, waits.never):
        with attempt:
            return connector.seal_status()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def initialize(
    connector: Connector, shares: int, threshold: int
) -> tuple[tuple[Secret, ...], Secret]:
    client = connector.client()
    doc = _vault_call(
        "init", client.sys.initialize, secret_shares=shares, secret_threshold=threshold
    )
    keys = tuple(Secret(k) for k in doc.get("keys_base64") or doc.get("keys") or [])
    token = Secret(str(doc.get("root_token", "")))
    doc.clear()
    if len(keys) != shares or not token.reveal():
        raise VaultError("init answered without the expected keys and root token")
    return keys, token


def unseal_initialized(connector: Connector, shares: tuple[Secret, ...]) -> None:
    """Unseal the node just initialized, with the shares already safe in backup and secret.

    The replicas still run the secret they were deployed with; until the swap reaches them,
    this node is the raft leader the others join, and a joiner can only unseal once its leader
    is unsealed. Without this, a rolling update that replaces a joiner first waits on a leader
    that is itself waiting for its turn. Best effort: each replica's entrypoint unseals from the
    new secret anyway.
    """
    from entrypoint.unseal import submit_shares

    try:
        status = connector.seal_status()
        if status.sealed:
            status = submit_shares(connector, status, shares)
    except VaultError as exc:  # UnsealPending (still sealed) included
        logs.event(log, "unseal_after_init_failed", logging.WARNING, error=str(exc))
        return
    logs.event(log, "unsealed_after_init", shares=status.threshold)


class KeyRotation:
    """Vault's rekey, or OpenBao's authenticated ``sys/rotate/root`` (OpenBao >= 2.4)."""

    def __init__(self, connector: Connector, token: Secret | None) -> None:
        import hvac.exceptions

        self._client = connector.client()
        self._token = token
        self._base = "/v1/sys/rekey"
        self._wrapped = False
        try:
            self._client.adapter.get("/v1/sys/rotate/root/init", headers=self._headers())
        except (hvac.exceptions.InvalidPath, hvac.exceptions.UnsupportedOperation):
            return  # HashiCorp Vault or an older OpenBao: the unauthenticated rekey API
        except hvac.exceptions.Forbidden:
            raise ConfigError(
                "this server rotates keys through the authenticated sys/rotate/root API: "
                "give a token with --token-file"
            ) from None
        except hvac.exceptions.VaultError:
            pass
        else:
            self._base = "/v1/sys/rotate/root"
            self._wrapped = True

    def _headers(self) -> dict[str, str]:
        return {"X-Vault-Token": self._token.reveal()} if self._token else {}

    def _do(self, what: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        adapter = self._client.adapter
        call = getattr(adapter, method)
        kwargs: dict[str, Any] = {"headers": self._headers()}
        if body is not None:
            kwargs["json"] = body
        doc = _vault_call(what, call, self._base + path, **kwargs)
        return doc.get("data", doc) if self._wrapped else doc

    def status(self) -> dict[str, Any]:
        return dict(self._do("rekey status", "get", "/init"))

    def cancel(self) -> None:
        self._do("rekey cancel", "delete", "/init")

    def start(self, shares: int, threshold: int) -> str:
        doc = self._do(
            "rekey init",
            "put",
            "/init",
            {"secret_shares": shares, "secret_threshold": threshold, "require_verification": True},
        )
        nonce = doc.get("nonce") or self.status().get("nonce")
        if not nonce:
            raise RotationFailed("rekey init returned no nonce")
        return str(nonce)

    def submit_old(self, shares: tuple[Secret, ...], nonce: str) -> tuple[tuple[Secret, ...], str]:
        """Submit current shares; returns the pending new shares and the verification nonce."""
        doc: dict[str, Any] = {}
        for share in shares:
            doc = dict(self._do("rekey", "put", "/update", {"key": share.reveal(), "nonce": nonce}))
            if doc.get("complete"):
                break
        keys = tuple(Secret(k) for k in doc.pop("keys_base64", None) or doc.pop("keys", None) or [])
        doc.pop("keys", None)
        if not doc.get("complete") or not keys:
            raise UnsealKeyRejected(f"the {len(shares)} share(s) given did not complete the rekey")
        return keys, str(doc.get("verification_nonce") or "")

    def verify(self, shares: tuple[Secret, ...], nonce: str) -> None:
        for share in shares:
            doc = self._do(
                "rekey verify", "put", "/verify", {"key": share.reveal(), "nonce": nonce}
            )
            if doc.get("complete"):
                return
        raise RotationFailed("rekey verification did not complete with the new shares")

    def shares_valid(self, shares: tuple[Secret, ...], layout: tuple[int, int]) -> bool:
        """Whether ``shares`` are Vault's current keys, changing nothing (the rekey is cancelled
        before verification, so the keys in force stay in force)."""
        nonce = self.start(*layout)
        try:
            self.submit_old(shares[: layout[1]], nonce)
        except UnsealKeyRejected:
            return False
        finally:
            self.cancel()
        return True


# --- the command's two jobs ---------------------------------------------------------------


def _store(
    client: Any, cfg: BootstrapConfig, keys: tuple[Secret, ...], threshold: int
) -> tuple[SecretVersion, Path]:
    """Backup first (0600), then the secret; a failed secret leaves the backup and says so."""
    name, version = next_secret_name(client, cfg.secret_prefix, cfg.backup_dir)
    backup = backup_path(cfg.backup_dir, name)
    write_new_file(backup, backup_payload(keys, threshold, name))
    logs.event(log, "backup_written", path=str(backup), shares=len(keys), threshold=threshold)
    try:
        secret = create_secret(client, name, version, secret_payload(keys, threshold))
    except Exception as exc:  # any Docker failure here must name the backup, then propagate
        logs.event(
            log,
            "secret_not_created",
            logging.ERROR,
            secret=name,
            rescue_file=str(backup),
            error=type(exc).__name__,
        )
        raise SecretStoreFailed(
            f"secret {name} could not be created ({type(exc).__name__}); the key shares are in "
            f"{backup} (mode 0600): keep it safe and run bootstrap again with --adopt-key-file"
        ) from None
    logs.event(log, "secret_created", secret=name, id=secret.id[:12], target=SECRET_TARGET)
    return secret, backup


def _deliver(
    client: Any, connector: Connector, cfg: BootstrapConfig, secret: SecretVersion, out: Outcome
) -> None:
    """Swap ``secret`` into the service (if it exists), await the replicas, drop old versions."""
    service = find_service(client, cfg.service)
    if service is None:
        logs.event(log, "service_missing", logging.WARNING, service=cfg.service, secret=secret.name)
        out.say(f"service {cfg.service} not found: deploy it with the secret {secret.name}")
        return
    mounted = mounted_secret(service)
    if mounted is None or mounted.get("SecretID") != secret.id:
        swap_secret(client, cfg.service, secret)
        logs.event(
            log,
            "secret_swapped",
            service=cfg.service,
            old=(mounted or {}).get("SecretName", "-"),
            new=secret.name,
            target=SECRET_TARGET,
        )
    detail = wait_replicas(
        client, connector, cfg.service, secret, cfg.unseal_wait, cfg.poll_interval
    )
    logs.event(log, "replicas_unsealed", service=cfg.service, secret=secret.name, detail=detail)
    removed = remove_unused(client, secret, cfg.secret_prefix)
    out.say(f"service {cfg.service} uses {secret.name}; {detail}")
    if removed:
        out.say(f"removed old secret(s): {', '.join(removed)}")


def bootstrap(cfg: BootstrapConfig, connector: Connector) -> Outcome:
    """Initialize when needed and store the key; on an initialized Vault change nothing."""
    out = Outcome()
    status = wait_listening(connector, cfg.wait, cfg.poll_interval)
    if status.initialized:
        return _found_initialized(cfg, connector, status, out)
    shares = cfg.shares or 1
    threshold = cfg.threshold or 1
    if not 1 <= threshold <= shares:
        raise ConfigError(f"threshold {threshold} must be between 1 and shares ({shares})")
    check_prefix(cfg.secret_prefix)
    if cfg.root_token_file is None and not cfg.print_root_token:
        raise ConfigError("name a --root-token-file (or ask for --print-root-token)")
    check_dir_writable(cfg.backup_dir)
    with (
        swarm_manager(cfg.docker_timeout) as client,
        reserved_token_file(cfg.root_token_file) as write_token,
    ):
        keys, token = initialize(connector, shares, threshold)
        logs.event(log, "initialized", shares=shares, threshold=threshold)
        write_token(token)
        if cfg.root_token_file is not None:
            logs.event(log, "root_token_written", path=str(cfg.root_token_file))
            out.say(f"root token written to {cfg.root_token_file} (mode 0600)")
        if cfg.print_root_token:
            out.root_token = token
        secret, backup = _store(client, cfg, keys, threshold)
        out.say(
            f"initialized: {threshold} of {shares} shares; secret {secret.name}; backup {backup}"
        )
        unseal_initialized(connector, keys[:threshold])
        _deliver(client, connector, cfg, secret, out)
    return out


def _found_initialized(
    cfg: BootstrapConfig, connector: Connector, status: SealStatus, out: Outcome
) -> Outcome:
    with swarm_manager(cfg.docker_timeout) as client:
        versions = secret_versions(client, cfg.secret_prefix)
        service = find_service(client, cfg.service)
        mounted = mounted_secret(service) if service else None
        logs.event(
            log,
            "already_initialized",
            sealed=status.sealed,
            shares=status.shares,
            threshold=status.threshold,
            secrets=[v.name for v in versions] or "-",
            mounted=(mounted or {}).get("SecretName", "-"),
        )
        out.say(
            f"already initialized ({'sealed' if status.sealed else 'unsealed'}, "
            f"{status.threshold} of {status.shares} shares): nothing initialized"
        )
        out.say(f"unseal key secrets: {', '.join(v.name for v in versions) or 'none'}")
        out.say(
            f"service {cfg.service}: "
            + (f"mounts {mounted.get('SecretName')}" if mounted else "not found or no key mounted")
        )
        if cfg.adopt_key_file is not None:
            check_prefix(cfg.secret_prefix)
            keys = read_key_file(cfg.adopt_key_file)
            check_dir_writable(cfg.backup_dir)
            secret, _ = _store(client, cfg, keys, status.threshold or len(keys))
            out.say(f"adopted the shares of {cfg.adopt_key_file} as {secret.name}")
            _deliver(client, connector, cfg, secret, out)
    return out


def rotate(cfg: BootstrapConfig, connector: Connector) -> Outcome:
    """Rekey with verification, swap the new secret in, await the replicas, drop the old one.

    Re-running after an interruption resumes: a newer secret version whose backup holds the
    keys in force is swapped in instead of rekeying again.
    """
    out = Outcome()
    if cfg.unseal_key_file is None:
        raise ConfigError("--rotate needs the current shares: --unseal-key-file")
    check_prefix(cfg.secret_prefix)
    current = read_key_file(cfg.unseal_key_file)
    token = _read_token(cfg.token_file)
    check_dir_writable(cfg.backup_dir)
    status = wait_listening(connector, cfg.wait, cfg.poll_interval)
    if not status.initialized:
        raise VaultNotInitialized("Vault is not initialized: run bootstrap without --rotate first")
    if status.sealed:
        raise VaultSealed("Vault is sealed: a rekey needs an unsealed Vault")
    layout = (cfg.shares or status.shares, cfg.threshold or status.threshold)
    with swarm_manager(cfg.docker_timeout) as client:
        rekey = KeyRotation(connector, token)
        if rekey.status().get("started"):
            rekey.cancel()  # a rekey left by an interrupted run: the keys in force stay in force
            logs.event(log, "leftover_rekey_cancelled")
        service = find_service(client, cfg.service)
        mounted = mounted_secret(service) if service else None
        versions = secret_versions(client, cfg.secret_prefix)
        mounted_version = next(
            (v for v in versions if v.id == (mounted or {}).get("SecretID")), None
        )
        newer = [
            v for v in versions if mounted_version is None or v.version > mounted_version.version
        ]
        active = _resume_candidate(rekey, newer, cfg.backup_dir, (status.shares, status.threshold))
        if active is not None:
            logs.event(log, "rotation_resumed", secret=active.name)
            out.say(f"resuming: {active.name} already holds the keys in force")
        else:
            active = _rekey(client, rekey, cfg, current, layout)
            out.say(f"rekeyed: {layout[1]} of {layout[0]} shares; new secret {active.name}")
        for stale in newer:
            if stale.id != active.id:
                # Newer than the mounted one but never in force (an earlier run stopped before
                # verification): it unseals nothing.
                remove_secret(client, stale, "stale_secret_removed")
        _deliver(client, connector, cfg, active, out)
    return out


def _resume_candidate(
    rekey: KeyRotation, newer: list[SecretVersion], backup_dir: Path, layout: tuple[int, int]
) -> SecretVersion | None:
    for version in reversed(newer):
        backup = backup_path(backup_dir, version.name)
        try:
            keys = read_key_file(backup)
        except EntrypointError:
            continue
        if len(keys) >= layout[1] and rekey.shares_valid(keys, layout):
            return version
    return None


def _rekey(
    client: Any,
    rekey: KeyRotation,
    cfg: BootstrapConfig,
    current: tuple[Secret, ...],
    layout: tuple[int, int],
) -> SecretVersion:
    shares, threshold = layout
    if not 1 <= threshold <= shares:
        raise ConfigError(f"threshold {threshold} must be between 1 and shares ({shares})")
    nonce = rekey.start(shares, threshold)
    try:
        new_keys, verify_nonce = rekey.submit_old(current, nonce)
    except UnsealKeyRejected:
        rekey.cancel()
        raise UnsealKeyRejected(
            f"the shares in {cfg.unseal_key_file} are not Vault's current keys; nothing changed"
        ) from None
    logs.event(log, "rekey_pending_verification", shares=shares, threshold=threshold)
    try:
        secret, _ = _store(client, cfg, new_keys, threshold)
    except BaseException:
        rekey.cancel()  # the old keys stay in force; the new ones are only in the backup
        raise
    try:
        rekey.verify(new_keys[:threshold], verify_nonce)
    except Exception:
        with contextlib.suppress(EntrypointError):
            rekey.cancel()
        raise RotationFailed(
            f"rekey verification failed: the old keys stay in force; {secret.name} is unused"
        ) from None
    except BaseException:
        # Interrupted: cancel so the old keys stay in force; a re-run removes the unused secret.
        with contextlib.suppress(EntrypointError):
            rekey.cancel()
        raise
    logs.event(log, "rekeyed", secret=secret.name, shares=shares, threshold=threshold)
    return secret


def _read_token(path: Path | None) -> Secret | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"token file {path} cannot be read: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"token file {path} is empty")
    return Secret(text)


def rotate_or_bootstrap(cfg: BootstrapConfig, connector: Connector) -> Outcome:
    return rotate(cfg, connector) if cfg.rotate else bootstrap(cfg, connector)


# --- the click command --------------------------------------------------------------------


def make_command() -> click.Command:
    """The click command; built on demand because the CLI module imports this one."""
    from entrypoint.cli import ENV, cert_options, connector_for, option, vault_options, vault_target

    env = ENV + "BOOTSTRAP_"
    file_type = click.Path(path_type=Path, dir_okay=False)

    @click.command("bootstrap")
    @vault_options
    @cert_options
    @option(
        "--shares",
        env=env + "SHARES",
        default=None,
        type=click.IntRange(min=1),
        help="Key shares to create [default: 1 at init; the current number when rotating].",
    )
    @option(
        "--threshold",
        env=env + "THRESHOLD",
        default=None,
        type=click.IntRange(min=1),
        help="Shares needed to unseal; the secret holds this many [default: 1, or the current].",
    )
    @option(
        "--secret-prefix",
        env=env + "SECRET_PREFIX",
        default=SECRET_TARGET,
        help="Docker secret name prefix; each version is <prefix>-YYYYmmddHHMMSS.",
    )
    @option(
        "--service",
        env=env + "SERVICE",
        default="iklimco_vault",
        help="Vault service whose vault_unseal_key secret is swapped (when it exists).",
    )
    @option(
        "--root-token-file",
        env=env + "ROOT_TOKEN_FILE",
        default=None,
        type=file_type,
        help="New file (mode 0600) that receives the root token at init; never overwritten.",
    )
    @option(
        "--print-root-token",
        env=env + "PRINT_ROOT_TOKEN",
        is_flag=True,
        default=False,
        help="Print the root token on stdout at init (never logged).",
    )
    @option(
        "--backup-dir",
        env=env + "BACKUP_DIR",
        default=".",
        type=click.Path(path_type=Path, file_okay=False),
        help="Where every new set of shares is written (0600) before the secret is created.",
    )
    @option(
        "--rotate",
        env=env + "ROTATE",
        is_flag=True,
        default=False,
        help="Rekey (with verification), swap the new secret in, then remove the old one.",
    )
    @option(
        "--unseal-key-file",
        env=env + "UNSEAL_KEY_FILE",
        default=None,
        type=file_type,
        help="Current shares for --rotate (a backup file written by this command).",
    )
    @option(
        "--token-file",
        env=env + "TOKEN_FILE",
        default=None,
        type=file_type,
        help="Token for --rotate on servers with authenticated rotation (OpenBao >= 2.4).",
    )
    @option(
        "--adopt-key-file",
        env=env + "ADOPT_KEY_FILE",
        default=None,
        type=file_type,
        help="On an initialized Vault: store these shares as a new secret version.",
    )
    @option(
        "--wait",
        "wait_seconds",
        env=env + "WAIT",
        default=120.0,
        type=click.FloatRange(min=0),
        help="Seconds to wait for the Vault listener.",
    )
    @option(
        "--unseal-wait",
        env=env + "UNSEAL_WAIT",
        default=300.0,
        type=click.FloatRange(min=0),
        help="Seconds to wait until every replica runs the new secret and is unsealed.",
    )
    @option(
        "--timeout",
        env=env + "TIMEOUT",
        default=30.0,
        type=click.FloatRange(min=0.5),
        help="Seconds to wait for one Vault or Docker answer.",
    )
    def bootstrap_command(
        shares: int | None,
        threshold: int | None,
        secret_prefix: str,
        service: str,
        root_token_file: Path | None,
        print_root_token: bool,
        backup_dir: Path,
        rotate: bool,
        unseal_key_file: Path | None,
        token_file: Path | None,
        adopt_key_file: Path | None,
        wait_seconds: float,
        unseal_wait: float,
        timeout: float,
        **opts: Any,
    ) -> None:
        """Initialize Vault and store its unseal key as a versioned Docker secret; or rotate it.

        Idempotent: on an initialized Vault nothing is initialized. Interrupted, run it again.
        """
        connector = connector_for(vault_target(timeout=timeout, **opts))
        cfg = BootstrapConfig(
            target=connector.target,
            backup_dir=backup_dir,
            shares=shares,
            threshold=threshold,
            secret_prefix=secret_prefix,
            service=service,
            root_token_file=root_token_file,
            print_root_token=print_root_token,
            rotate=rotate,
            unseal_key_file=unseal_key_file,
            token_file=token_file,
            adopt_key_file=adopt_key_file,
            wait=wait_seconds,
            unseal_wait=unseal_wait,
            docker_timeout=timeout,
        )
        outcome = rotate_or_bootstrap(cfg, connector)
        for line in outcome.lines:
            click.echo(line)
        if outcome.root_token is not None:
            click.echo(f"root token: {outcome.root_token.reveal()}")

    return bootstrap_command
