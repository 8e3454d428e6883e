"""cert-distributor against the real Docker engine and a one-node Swarm."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.distributor import FINGERPRINT_LABEL, SERVICE_NAME_LABEL
from tests.helpers.distributor import Distributors, Shared
from tests.swarm.distributor_helpers import (
    HUP_SCRIPT,
    busybox_image,
    eventually,
    unique,
)


@pytest.fixture
def service(swarm: Any) -> Iterator[Any]:
    """A one-replica service on a local image, removed afterwards by its id."""
    image = busybox_image(swarm)
    created = swarm.services.create(
        image, command=["sh", "-c", HUP_SCRIPT], name=unique(), stop_grace_period=1_000_000_000
    )
    try:
        yield created
    finally:
        created.remove()


def spec_of(service: Any) -> tuple[int, str | None]:
    service.reload()
    spec = service.attrs["Spec"]
    force = int(spec["TaskTemplate"].get("ForceUpdate", 0))
    return force, (spec.get("Labels") or {}).get(FINGERPRINT_LABEL)


def test_restart_exactly_once_per_certificate(
    distributors: Distributors, shared: Shared, service: Any
) -> None:
    name = service.name
    args = ("--vault-reload", "restart", "--vault-service", name)
    service.reload()
    spec_before = service.attrs["Spec"]
    shared.publish()
    first_fp = shared.fingerprint()
    # Two distributors at once (two nodes' worth of node dirs, both on this manager).
    node_a = distributors.start(*args, node="node-a")
    node_b = distributors.start(*args, node="node-b")
    for proc in (node_a, node_b):
        proc.wait_for(r"event=(vault_restarted|restart_already_done) ", deadline=60)
        proc.wait_for(r"event=served_check_skipped", deadline=30)
    assert spec_of(service) == (1, first_fp)
    assert distributors.output().count("event=vault_restarted") == 1
    assert "force_update=1" in distributors.output()

    # Nothing else changed (no engine defaults written back): a later `docker stack deploy`
    # of the unchanged stack file must not roll Vault again.
    def ours_removed(spec: dict[str, Any]) -> dict[str, Any]:
        template = {k: v for k, v in spec["TaskTemplate"].items() if k != "ForceUpdate"}
        labels = {k: v for k, v in (spec.get("Labels") or {}).items() if k != FINGERPRINT_LABEL}
        return {**spec, "TaskTemplate": template, "Labels": labels}

    assert ours_removed(service.attrs["Spec"]) == ours_removed(spec_before)

    # A distributor restart: with its node dir nothing happens; on a fresh node it finds the
    # label and leaves the service alone.
    node_a.signal(signal.SIGTERM)
    assert node_a.wait_exit(30) == 0
    again = distributors.start(*args, node="node-a")
    again.wait_for(r"event=started")
    fresh = distributors.start(*args, node="node-c")
    fresh.wait_for(r"event=restart_already_done .*sha256=" + first_fp, deadline=60)
    assert spec_of(service) == (1, first_fp)

    # A second certificate: exactly one more forced update.
    shared.publish()
    second_fp = shared.fingerprint()
    for proc in (again, node_b, fresh):
        proc.wait_for(r"event=(vault_restarted|restart_already_done) .*sha256=" + second_fp, 60)
    assert spec_of(service) == (2, second_fp)
    assert distributors.output().count("event=vault_restarted") == 2
    assert "event=reload_failed" not in distributors.output()

    # Swarm really rolled the task: the replacement task runs.
    eventually(
        lambda: (
            sum(t["Status"]["State"] == "running" for t in service.tasks()) == 1
            and len(service.tasks()) >= 2
        ),
        60,
        "the forced update did not replace the task",
    )


@pytest.fixture
def hup_containers(docker_client: Any) -> Iterator[tuple[str, Any, Any]]:
    """A container labelled as a task of a (pretend) service, and an unrelated one."""
    image = busybox_image(docker_client)
    service_name = unique("vetest-svc")
    made = []
    try:
        for label in (service_name, unique("vetest-other")):
            made.append(
                docker_client.containers.run(
                    image,
                    ["sh", "-c", HUP_SCRIPT],
                    name=unique(),
                    labels={SERVICE_NAME_LABEL: label},
                    detach=True,
                )
            )
        for container in made:
            eventually(lambda c=container: b"ready" in c.logs(), 30, "container not ready")
        yield service_name, made[0], made[1]
    finally:
        for container in made:
            container.remove(force=True)


def test_sighup_reaches_this_nodes_vault_containers(
    distributors: Distributors, shared: Shared, hup_containers: tuple[str, Any, Any]
) -> None:
    service_name, target, other = hup_containers
    shared.publish()
    proc = distributors.start("--once", "--vault-reload", "sighup", "--vault-service", service_name)
    assert proc.wait_exit(60) == 0, proc.output()
    assert f"event=vault_signalled signal=SIGHUP containers={target.name}" in proc.output()
    eventually(lambda: b"got-hup" in target.logs(), 30, "SIGHUP did not reach the container")
    assert b"got-hup" not in other.logs()
    target.reload()
    assert target.status == "running"


def test_docker_unreachable_then_back(
    distributors: Distributors, shared: Shared, docker_client: Any, tmp_path: Path
) -> None:
    real_socket = Path("/var/run/docker.sock")
    if not real_socket.exists():
        pytest.skip("the engine does not listen on /var/run/docker.sock")
    socket_dir = tmp_path / "sock"
    socket_dir.mkdir()
    late_socket = socket_dir / "docker.sock"
    shared.publish()
    fp = shared.fingerprint()
    proc = distributors.start(
        "--vault-reload",
        "sighup",
        "--vault-service",
        unique("vetest-none"),
        "--docker-timeout",
        "2",
        DOCKER_HOST=f"unix://{late_socket}",
    )
    proc.wait_for(r"event=not_installed .*error=DockerUnavailable .*Docker engine unreachable")
    assert not (tmp_path / "node").exists()
    assert proc.popen.poll() is None

    os.symlink(real_socket, late_socket)  # the engine comes back
    proc.wait_for(r"event=installed .*sha256=" + fp)
    proc.wait_for(r"event=no_local_vault_task ")
    proc.wait_for(r"event=served_check_skipped")
    assert proc.output().count("event=not_installed") == 1  # logged once, retried quietly
