"""cert-distributor: install each complete published generation on this node, then make Vault
use it (a Swarm rolling restart or SIGHUP) and check the certificate Vault actually serves.

The node-local dir is laid out like Kubernetes' atomic writer::

    STAR.iklim.co.full.crt -> ..data/STAR.iklim.co.full.crt
    STAR.iklim.co_key.pem  -> ..data/STAR.iklim.co_key.pem
    cert-manifest.json     -> ..data/cert-manifest.json
    ..data                 -> ..gen-20250101T000000.000000Z-x1y2z3   (swapped atomically)
    ..gen-.../             one directory per generation, the previous one kept for late readers

All links are relative, so they resolve inside a container that mounts the whole directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from entrypoint import files, logs, waits
from entrypoint.certs import (
    CertInfo,
    CertPair,
    await_served,
    now_utc,
    read_pair,
    validate_pair,
)
from entrypoint.config import DEFAULT_CERT_NAME, DEFAULT_KEY_NAME
from entrypoint.errors import (
    CertificateError,
    ConfigError,
    DockerUnavailable,
    EntrypointError,
    ServiceUpdateConflict,
    SourceNotReady,
)
from entrypoint.manifest import MANIFEST_NAME, Manifest, manifest_item, read_manifest
from entrypoint.supervisor import STOPPING, SignalRecorder
from entrypoint.swarm import update_service_spec

log = logging.getLogger(__name__)

DATA_LINK = "..data"
GENERATION_PREFIX = "..gen-"
LOCK_NAME = "..lock"
RELOADED_NAME = "..reloaded"
# Recorded on the Vault service: the certificate its tasks were last restarted for.
FINGERPRINT_LABEL = "io.vault-entrypoint.cert-sha256"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"


class ReloadMode(enum.StrEnum):
    RESTART = "restart"
    SIGHUP = "sighup"
    NONE = "none"


@dataclass(frozen=True)
class DistributorConfig:
    source_dir: Path
    dest_dir: Path
    cert_name: str = DEFAULT_CERT_NAME
    key_name: str = DEFAULT_KEY_NAME
    vault_service: str = "iklimco_vault"
    vault_reload: ReloadMode = ReloadMode.RESTART
    vault_addr: str | None = "https://127.0.0.1:8200"
    tls_server_name: str | None = None
    interval: float = 60.0
    check_timeout: float = 180.0
    check_interval: float = 1.0
    docker_timeout: float = 30.0
    key_owner: tuple[int, int] | None = None
    once: bool = False


def parse_owner(text: str | None) -> tuple[int, int] | None:
    """``UID`` or ``UID:GID`` (numbers: the container's user need not exist on the node)."""
    if text is None or not text.strip():
        return None
    uid, _, gid = text.strip().partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ConfigError(f"--key-owner {text!r} is not UID or UID:GID") from None


# --- the source: one published generation -------------------------------------------------


@dataclass(frozen=True)
class Generation:
    manifest: Manifest
    cert_pem: bytes
    key_pem: bytes
    info: CertInfo


def read_generation(
    source_dir: Path, cert_name: str, key_name: str, now: dt.datetime | None = None
) -> Generation:
    """The published pair, only when both files match the manifest and validate as a pair."""
    if not source_dir.is_dir():
        raise SourceNotReady(f"source {source_dir} is not a directory (storage not mounted?)")
    manifest = read_manifest(source_dir)
    if manifest is None:
        raise SourceNotReady(f"{source_dir} holds no {MANIFEST_NAME}: nothing published yet")
    if (manifest.cert_name, manifest.key_name) != (cert_name, key_name):
        raise SourceNotReady(
            f"{source_dir / MANIFEST_NAME} describes {manifest.cert_name} and "
            f"{manifest.key_name}, not {cert_name} and {key_name}"
        )
    pair = CertPair.in_dir(source_dir, cert_name, key_name)
    cert_pem, key_pem = read_pair(pair)
    if not manifest.matches(cert_pem, key_pem):
        raise SourceNotReady(
            f"generation in {source_dir} is half-written: the files do not match "
            f"{MANIFEST_NAME} (published {manifest.published_at.isoformat()})"
        )
    info = validate_pair(cert_pem, key_pem, now, str(pair.cert), str(pair.key))
    if info.fingerprint != manifest.fingerprint:
        raise SourceNotReady(f"{MANIFEST_NAME} in {source_dir} names another certificate")
    return Generation(manifest, cert_pem, key_pem, info)


# --- the destination: generations behind one atomically swapped link ----------------------


class NodeDir:
    """The node-local dir Vault mounts, written the way Kubernetes' atomic writer does."""

    def __init__(
        self,
        root: Path,
        cert_name: str,
        key_name: str,
        keep: int = 2,
        key_owner: tuple[int, int] | None = None,
    ) -> None:
        self.root = root
        self.names = (cert_name, key_name, MANIFEST_NAME)
        self.keep = keep
        self.key_owner = key_owner

    def current(self) -> Manifest | None:
        """The manifest of the installed generation, when its files still match it."""
        data = self.root / DATA_LINK
        try:
            manifest = read_manifest(data)
        except SourceNotReady:
            return None
        if manifest is None:
            return None
        try:
            cert_pem, key_pem = read_pair(CertPair.in_dir(data, *self.names[:2]))
        except CertificateError:
            return None
        return manifest if manifest.matches(cert_pem, key_pem) else None

    def current_pair(self) -> CertPair:
        return CertPair.in_dir(self.root / DATA_LINK, *self.names[:2])

    def install(self, generation: Generation) -> str:
        """Write a new generation dir, then swap ``..data`` to it in one ``rename``."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            new = Path(tempfile.mkdtemp(prefix=f"{GENERATION_PREFIX}{stamp}-", dir=self.root))
            try:
                new.chmod(0o755)
                cert_name, key_name, _ = self.names
                files.atomic_write_all(
                    [
                        (new / cert_name, generation.cert_pem, files.CERT_MODE),
                        (new / key_name, generation.key_pem, files.KEY_MODE),
                        manifest_item(new, generation.manifest),
                    ]
                )
                if self.key_owner is not None:
                    # Before the swap: Vault's user must be able to read the key it is shown.
                    os.chown(new / key_name, *self.key_owner)
                self._replace_link(DATA_LINK, new.name)
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                raise
            for name in self.names:
                if _readlink(self.root / name) != f"{DATA_LINK}/{name}":
                    self._replace_link(name, f"{DATA_LINK}/{name}")
            files.fsync_dir(self.root)
            self._prune(new.name)
        return new.name

    def _replace_link(self, name: str, target: str) -> None:
        tmp = self.root / f".{name}.link.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, self.root / name)

    def _prune(self, current: str) -> None:
        """Remove all but the newest ``keep`` generations (a late reader may hold the last)."""
        generations = sorted(
            p.name
            for p in self.root.iterdir()
            if p.name.startswith(GENERATION_PREFIX) and p.is_dir() and not p.is_symlink()
        )
        keep = set(generations[-self.keep :]) | {current}
        for name in generations:
            if name not in keep:
                shutil.rmtree(self.root / name, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Two distributors sharing one dir must not prune each other's fresh generation."""
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def reloaded(self) -> str | None:
        """The fingerprint Vault was last confirmed (or told) to use."""
        try:
            return (self.root / RELOADED_NAME).read_text().strip() or None
        except OSError:
            return None

    def mark_reloaded(self, fingerprint: str) -> None:
        files.atomic_write(self.root / RELOADED_NAME, f"{fingerprint}\n".encode(), files.CERT_MODE)


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


# --- Docker: the Vault service and its containers ------------------------------------------


@contextlib.contextmanager
def docker_client(timeout: float) -> Iterator[Any]:
    """A docker SDK client; any failure to talk to the engine becomes ``DockerUnavailable``."""
    import docker
    import docker.errors
    import requests

    try:
        client = docker.from_env(timeout=timeout)
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(f"Docker engine unreachable: {_short(exc)}") from None
    try:
        try:
            client.ping()
            yield client
        except docker.errors.NotFound as exc:
            raise DockerUnavailable(f"Docker object not found: {_short(exc)}") from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise DockerUnavailable(f"Docker engine request failed: {_short(exc)}") from None
    finally:
        client.close()


def _short(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).splitlines()[0][:300]


def is_manager(client: Any) -> bool:
    swarm = client.info().get("Swarm") or {}
    return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))


def force_update_once(
    client: Any,
    service: str,
    fingerprint: str,
    sleep: Callable[[float], object],
    should_stop: Callable[[], bool],
    attempts: int = 8,
) -> int | None:
    """Force a rolling restart unless the service already carries ``fingerprint``.

    Returns the new ``ForceUpdate`` value, or None when another distributor already did it.
    Swarm's version check makes concurrent distributors race safely: the loser gets "update
    out of sequence", reads the service again and finds the label set.
    """
    import docker.errors

    def attempt_update() -> int | None:
        current = client.api.inspect_service(service)
        spec = current["Spec"]
        labels = dict(spec.get("Labels") or {})
        if labels.get(FINGERPRINT_LABEL) == fingerprint:
            return None
        force = int(spec.get("TaskTemplate", {}).get("ForceUpdate", 0)) + 1
        labels[FINGERPRINT_LABEL] = fingerprint
        try:
            update_service_spec(client, current, {"ForceUpdate": force}, labels)
        except docker.errors.APIError as exc:
            if "out of sequence" in str(exc):
                raise ServiceUpdateConflict(f"service {service}: {_short(exc)}") from None
            raise
        return force

    retrying = waits.service_update_retrying(attempts, (ServiceUpdateConflict,), sleep, should_stop)
    for attempt in retrying:
        with attempt:
            return attempt_update()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def signal_local_tasks(client: Any, service: str, signame: str = "SIGHUP") -> list[str]:
    """Send ``signame`` to this node's running containers of ``service``; returns their names."""
    containers = client.containers.list(filters={"label": f"{SERVICE_NAME_LABEL}={service}"})
    for container in containers:
        container.kill(signal=signame)
    return [str(c.name) for c in containers]


# --- the served certificate ----------------------------------------------------------------


def probe_target(addr: str) -> tuple[str, int]:
    parts = urlsplit(addr if "://" in addr else f"https://{addr}")
    if not parts.hostname:
        raise ValueError(f"no host in {addr!r}")
    return parts.hostname, parts.port or 8200


def check_served(
    addr: str,
    server_name: str | None,
    expected: Manifest,
    timeout: float,
    interval: float,
    sleep: Callable[[float], object],
    should_stop: Callable[[], bool],
) -> None:
    """Handshake (with SNI) until Vault presents the installed leaf, or raise after ``timeout``."""
    host, port = probe_target(addr)
    await_served(
        host,
        port,
        server_name,
        expected.fingerprint,
        expected.not_after,
        timeout,
        interval,
        sleep,
        should_stop,
    )


# --- one pass and the loop ------------------------------------------------------------------


class Distributor:
    """One pass: install a new complete generation, then reload Vault until it serves it."""

    def __init__(
        self,
        cfg: DistributorConfig,
        sleep: Callable[[float], object],
        should_stop: Callable[[], bool],
    ) -> None:
        self.cfg = cfg
        self.node = NodeDir(cfg.dest_dir, cfg.cert_name, cfg.key_name, key_owner=cfg.key_owner)
        self._sleep = sleep
        self._should_stop = should_stop
        self._reports: dict[str, str] = {}

    def sync(self) -> str | None:
        """Install the published generation if it is new; returns the new generation's name."""
        generation = read_generation(
            self.cfg.source_dir, self.cfg.cert_name, self.cfg.key_name, now_utc()
        )
        installed = self.node.current()
        if generation.manifest.same_content(installed):
            return None
        if self.cfg.vault_reload is not ReloadMode.NONE:
            # Install nothing that could not be followed by a reload.
            with docker_client(self.cfg.docker_timeout):
                pass
        name = self.node.install(generation)
        logs.event(
            log,
            "installed",
            dest=str(self.cfg.dest_dir),
            generation=name,
            replaced=installed.fingerprint if installed else "-",
            **generation.info.log_fields(),
        )
        return name

    def reload(self) -> bool:
        """Make Vault use the installed pair unless that was already confirmed; True if acted."""
        installed = self.node.current()
        if installed is None or self.node.reloaded() == installed.fingerprint:
            return False
        cfg = self.cfg
        if cfg.vault_reload is ReloadMode.RESTART:
            self._restart(installed)
        elif cfg.vault_reload is ReloadMode.SIGHUP:
            self._sighup()
        if cfg.vault_addr:
            server_name = cfg.tls_server_name or self._server_name()
            check_served(
                cfg.vault_addr,
                server_name,
                installed,
                cfg.check_timeout,
                cfg.check_interval,
                self._sleep,
                self._should_stop,
            )
            logs.event(
                log,
                "vault_serving",
                addr=cfg.vault_addr,
                sha256=installed.fingerprint,
                not_after=installed.not_after.isoformat(),
            )
        else:
            logs.event(log, "served_check_skipped", reason="no --vault-addr")
        self.node.mark_reloaded(installed.fingerprint)
        return True

    def _server_name(self) -> str | None:
        try:
            cert_pem, key_pem = read_pair(self.node.current_pair())
            return validate_pair(cert_pem, key_pem).server_name()
        except CertificateError:
            return None

    def _restart(self, installed: Manifest) -> None:
        cfg = self.cfg
        with docker_client(cfg.docker_timeout) as client:
            if not is_manager(client):
                logs.event(
                    log,
                    "restart_left_to_manager",
                    service=cfg.vault_service,
                    sha256=installed.fingerprint,
                )
                return
            force = force_update_once(
                client, cfg.vault_service, installed.fingerprint, self._sleep, self._should_stop
            )
        if force is None:
            logs.event(
                log, "restart_already_done", service=cfg.vault_service, sha256=installed.fingerprint
            )
        else:
            logs.event(
                log,
                "vault_restarted",
                service=cfg.vault_service,
                force_update=force,
                sha256=installed.fingerprint,
            )

    def _sighup(self) -> None:
        with docker_client(self.cfg.docker_timeout) as client:
            names = signal_local_tasks(client, self.cfg.vault_service)
        if names:
            logs.event(log, "vault_signalled", signal="SIGHUP", containers=names)
        else:
            logs.event(log, "no_local_vault_task", logging.WARNING, service=self.cfg.vault_service)

    def run_pass(self) -> list[EntrypointError]:
        """Sync, then reload; each step's failure is logged (once while it repeats)."""
        errors: list[EntrypointError] = []
        for step, action in (("sync", self.sync), ("reload", self.reload)):
            try:
                action()
            except EntrypointError as exc:
                errors.append(exc)
                self._report(step, exc)
            else:
                self._recovered(step)
        return errors

    def _report(self, step: str, exc: EntrypointError) -> None:
        if self._should_stop():
            return  # a wait cut short by SIGTERM is no failure worth a line
        text = f"{type(exc).__name__}:{exc}"
        if self._reports.get(step) == text and not self.cfg.once:
            return
        self._reports[step] = text
        event = "not_installed" if step == "sync" else "reload_failed"
        level = logging.WARNING if isinstance(exc, SourceNotReady) else logging.ERROR
        logs.event(
            log,
            event,
            level,
            error=type(exc).__name__,
            reason=str(exc),
            retry_in=self.cfg.interval,
        )

    def _recovered(self, step: str) -> None:
        if self._reports.pop(step, None) is not None:
            logs.event(log, "recovered", step=step)


def run(cfg: DistributorConfig) -> int:
    """The command: one pass (``--once``) or a poll loop until SIGTERM/SIGINT."""
    recorder = SignalRecorder()
    with recorder.installed(STOPPING):
        distributor = Distributor(cfg, recorder.wait, lambda: recorder.stop_requested is not None)
        logs.event(
            log,
            "started",
            source=str(cfg.source_dir),
            dest=str(cfg.dest_dir),
            service=cfg.vault_service,
            reload=cfg.vault_reload.value,
            interval=cfg.interval,
            once=cfg.once,
        )
        if cfg.once:
            errors = distributor.run_pass()
            if errors:
                raise errors[0]
            return 0
        while recorder.stop_requested is None:
            started = time.monotonic()
            distributor.run_pass()
            recorder.wait(cfg.interval - (time.monotonic() - started))
        logs.event(log, "stopped", signal=recorder.stop_requested)
    return 0
