"""The unseal key's Docker side: versioned secrets ``<prefix>-YYYYmmddHHMMSS`` labelled as
ours, the Vault service that mounts one of them as ``vault_unseal_key``, the swap of that mount
and the wait until every replica runs it, unsealed. docker loads only when a function runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoint import logs
from entrypoint.errors import DockerUnavailable, EntrypointError, ExitCode, VaultError

if TYPE_CHECKING:
    from entrypoint.vault import Connector

log = logging.getLogger(__name__)

SECRET_TARGET = "vault_unseal_key"  # noqa: S105 - a file name, not a password
ROLE_LABEL = "io.vault-entrypoint.role"
ROLE = "unseal-key"
VERSION_LABEL = "io.vault-entrypoint.version"
STAMP = "%Y%m%d%H%M%S"


class SecretStoreFailed(EntrypointError):
    """The key material could not be stored as a Docker secret (it is in the backup file)."""

    exit_code = ExitCode.UNAVAILABLE


class ReplicasNotUnsealed(VaultError):
    """Not every replica of the service was running and unsealed within the deadline."""


def backup_path(backup_dir: Path, name: str) -> Path:
    """The backup file of secret version ``name`` (all its shares, mode 0600)."""
    return backup_dir / f"{name}.keys"


@dataclass(frozen=True)
class SecretVersion:
    id: str
    name: str
    version: str


def secret_versions(client: Any, prefix: str) -> list[SecretVersion]:
    """Our unseal key secrets with this prefix, oldest first."""
    found = []
    for secret in client.secrets.list(filters={"label": f"{ROLE_LABEL}={ROLE}"}):
        attrs = secret.attrs
        name = attrs["Spec"]["Name"]
        labels = attrs["Spec"].get("Labels") or {}
        if name.startswith(prefix + "-"):
            found.append(SecretVersion(secret.id, name, labels.get(VERSION_LABEL, "")))
    return sorted(found, key=lambda s: (s.version, s.name))


def next_secret_name(client: Any, prefix: str, backup_dir: Path) -> tuple[str, str]:
    """A name ``<prefix>-YYYYmmddHHMMSS`` not used by a secret or a backup file yet."""
    taken = {s.name for s in secret_versions(client, prefix)}
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for _ in range(3600):
        version = when.strftime(STAMP)
        name = f"{prefix}-{version}"
        if name not in taken and not backup_path(backup_dir, name).exists():
            return name, version
        when += dt.timedelta(seconds=1)
    raise SecretStoreFailed(f"no free secret name for prefix {prefix}")


def create_secret(client: Any, name: str, version: str, payload: bytes) -> SecretVersion:
    created = client.secrets.create(
        name=name, data=payload, labels={ROLE_LABEL: ROLE, VERSION_LABEL: version}
    )
    return SecretVersion(str(created.id), name, version)


def find_service(client: Any, name: str) -> dict[str, Any] | None:
    import docker.errors

    try:
        return dict(client.api.inspect_service(name))
    except docker.errors.NotFound:
        return None


def mounted_secret(service: dict[str, Any]) -> dict[str, Any] | None:
    """The service's secret reference whose target is ``vault_unseal_key``."""
    spec = service["Spec"]["TaskTemplate"].get("ContainerSpec", {})
    for ref in spec.get("Secrets") or []:
        if (ref.get("File") or {}).get("Name") == SECRET_TARGET:
            return dict(ref)
    return None


def swap_secret(client: Any, service_name: str, new: SecretVersion) -> None:
    """Replace the secret with target ``vault_unseal_key`` by ``new`` (same target, same mode)."""
    import docker.errors

    from entrypoint import waits
    from entrypoint.errors import ServiceUpdateConflict
    from entrypoint.swarm import update_service_spec

    def attempt() -> None:
        current = client.api.inspect_service(service_name)
        task_template = current["Spec"]["TaskTemplate"]
        container_spec = dict(task_template.get("ContainerSpec", {}))
        refs = list(container_spec.get("Secrets") or [])
        old = mounted_secret(current)
        file_spec = dict(
            (old or {}).get("File")
            or {"Name": SECRET_TARGET, "UID": "0", "GID": "0", "Mode": 0o400}
        )
        refs = [r for r in refs if (r.get("File") or {}).get("Name") != SECRET_TARGET]
        refs.append({"SecretID": new.id, "SecretName": new.name, "File": file_spec})
        container_spec["Secrets"] = refs
        try:
            update_service_spec(client, current, {"ContainerSpec": container_spec})
        except docker.errors.APIError as exc:
            if "out of sequence" in str(exc):
                raise ServiceUpdateConflict(
                    f"service {service_name}: update out of sequence"
                ) from None
            raise

    retrying = waits.service_update_retrying(8, (ServiceUpdateConflict,), time.sleep, waits.never)
    for attempt_ in retrying:
        with attempt_:
            attempt()


def replicas_state(client: Any, service_name: str, secret_id: str) -> tuple[bool, str]:
    """(all replicas of the spec mounting ``secret_id`` run and are healthy, why not)."""
    import docker.errors

    service = client.api.inspect_service(service_name)
    update = (service.get("UpdateStatus") or {}).get("State", "")
    if update.startswith("rollback") or update == "paused":
        raise ReplicasNotUnsealed(
            f"service {service_name} update is {update}: "
            f"{(service.get('UpdateStatus') or {}).get('Message', '')}"
        )
    mode = service["Spec"].get("Mode") or {}
    wanted = int((mode.get("Replicated") or {}).get("Replicas", 0) or 0)
    tasks = client.api.tasks(filters={"service": service_name, "desired-state": "running"})
    if not tasks and wanted:
        return False, "no task scheduled yet"
    good = 0
    for task in tasks:
        refs = task["Spec"].get("ContainerSpec", {}).get("Secrets") or []
        if not any(r.get("SecretID") == secret_id for r in refs):
            return False, f"task {task['ID'][:12]} still mounts the previous secret"
        state = task["Status"].get("State")
        if state != "running":
            return False, f"task {task['ID'][:12]} is {state}"
        container_id = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
        if container_id:
            try:
                health = client.api.inspect_container(container_id)["State"].get("Health")
            except docker.errors.NotFound:
                health = None  # on another node: Swarm reports running only once healthy
            if health is not None and health.get("Status") != "healthy":
                return False, f"task {task['ID'][:12]} is {health.get('Status')} (sealed?)"
        good += 1
    if wanted and good < wanted:
        return False, f"{good} of {wanted} replicas ready"
    return True, f"{good} replica(s) running and healthy"


def wait_replicas(
    client: Any,
    connector: Connector,
    service_name: str,
    secret: SecretVersion,
    wait: float,
    poll: float,
) -> str:
    """Until every replica runs the new spec and is unsealed (health, then seal-status)."""
    deadline = time.monotonic() + wait
    addr = connector.target.addr
    reason = "not checked yet"
    while time.monotonic() < deadline:
        ready, reason = replicas_state(client, service_name, secret.id)
        if ready:
            try:
                status = connector.seal_status()
            except VaultError as exc:
                reason = f"{addr}: {exc}"
            else:
                if status.initialized and not status.sealed:
                    return reason
                reason = f"{addr} is sealed"
        time.sleep(poll)
    raise ReplicasNotUnsealed(
        f"replicas of {service_name} not all unsealed with {secret.name} within {wait:g}s: {reason}"
    )


def remove_secret(client: Any, version: SecretVersion, event: str) -> bool:
    import docker.errors

    try:
        client.api.remove_secret(version.id)
    except docker.errors.APIError as exc:
        logs.event(log, "secret_not_removed", logging.WARNING, secret=version.name, reason=str(exc))
        return False
    logs.event(log, event, secret=version.name)
    return True


def remove_unused(client: Any, keep: SecretVersion, prefix: str) -> list[str]:
    """Remove our secret versions other than ``keep`` that no service uses."""
    in_use = {
        ref.get("SecretID")
        for svc in client.api.services()
        for ref in svc["Spec"]["TaskTemplate"].get("ContainerSpec", {}).get("Secrets") or []
    }
    return [
        version.name
        for version in secret_versions(client, prefix)
        if version.id != keep.id
        and version.id not in in_use
        and remove_secret(client, version, "old_secret_removed")
    ]


@contextlib.contextmanager
def swarm_manager(timeout: float) -> Iterator[Any]:
    from entrypoint.distributor import docker_client, is_manager

    with docker_client(timeout) as client:
        if not is_manager(client):
            raise DockerUnavailable("this Docker engine is not a Swarm manager: secrets need one")
        yield client
