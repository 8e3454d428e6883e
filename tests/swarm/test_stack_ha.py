"""docker-stack-vault.yml in a real one-node Swarm, proving the seed's flow end to end.

One deployment per module (the ``stack`` fixture: three replicas on raft, one initialized by
`vault-entrypoint bootstrap`, two joined through retry_join). The tests run in file order and
each leaves the stack converged again: HA and the unseal seen three ways, a rolling restart, a
killed task, certificate rotation in restart and in sighup mode, and finally no key text in any
log.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

from tests.swarm.stack import Replica, Stack, docker_cli, eventually, parse_ts

# The module's stack fixture (build, deploy, bootstrap) counts against its first test.
pytestmark = pytest.mark.timeout(900)


def _uid_of_server(replica: Replica) -> tuple[int, int]:
    """(uid of PID 1 - the entrypoint, uid of the server process) as the host sees them."""
    top = replica.container.top(ps_args="-eo uid,pid,ppid,comm")
    titles = top["Titles"]
    rows = [dict(zip(titles, row, strict=True)) for row in top["Processes"]]
    entrypoint = next(r for r in rows if r["COMMAND"].startswith(("vault-entrypoin", "python")))
    server = next(r for r in rows if r["COMMAND"] in {"bao", "vault"})
    return int(entrypoint["UID"]), int(server["UID"])


def _unsealed_for(stack: Stack, replicas: list[Replica], deadline: float) -> dict[str, dict]:
    """The entrypoint's ``event=unsealed`` line of every given task, from docker service logs."""

    def all_seen() -> dict[str, dict] | None:
        events = stack.unsealed_events()
        return events if all(r.task_id in events for r in replicas) else None

    found: dict[str, dict] = eventually(all_seen, deadline, "event=unsealed of every task", 2.0)
    return found


def test_ha_every_replica_unsealed_one_active_two_standby(stack: Stack) -> None:
    replicas = stack.replicas()
    assert [r.slot for r in replicas] == [1, 2, 3]
    for replica in replicas:
        status = stack.status(replica)
        assert status is not None
        assert status["initialized"] is True and status["sealed"] is False, status
        assert status["ha_enabled"] is True and status["storage_type"] == "raft", status
        # The image's own health command (what the HEALTHCHECK runs) and Docker's verdict.
        assert stack.health(replica) == 0
        assert stack.docker_health(replica) == "healthy"
        # Non-root: the entrypoint (PID 1) and the server both run as the vault user.
        assert _uid_of_server(replica) == (100, 100)

    def roles() -> dict[str, str] | None:
        found = {}
        for replica in replicas:
            status = stack.status(replica)
            if status is None:
                return None
            found[replica.name] = "active" if status.get("is_self") else "standby"
        return found if sorted(found.values()) == ["active", "standby", "standby"] else None

    # The secret's rollout replaces the first leader too; raft elects the next one within
    # seconds of the last replica turning healthy.
    print(f"\nroles: {eventually(roles, 30, 'one active replica and two standby', 1.0)}")

    # Seen through `docker service logs`: the entrypoint's unsealed line for every task.
    events = _unsealed_for(stack, replicas, 60)
    for replica in replicas:
        print(f"{replica.name}: unsealed {events[replica.task_id]['since_start']}s after start")

    # The followers waited while they reported initialized=false (before joining); nobody
    # but the bootstrap command initialized anything.
    logs = stack.container_logs()
    for slot in (2, 3):
        task_logs = [chunk for chunk in logs.split("--- ") if f"_vault.{slot}." in chunk[:80]]
        assert any("event=vault_not_initialized" in chunk for chunk in task_logs), slot
    assert "operator init" not in logs
    # ... and that was the bootstrap command: init, secret swapped in, replicas awaited.
    out = stack.bootstrap_output
    for event in ("initialized", "backup_written", "secret_created", "secret_swapped"):
        assert f"event={event} " in out, event
    assert "event=replicas_unsealed" in out and "3 replica(s) running and healthy" in out
    assert stack.init is not None
    assert not [text for text in stack.init.texts() if text in out]


def test_stack_deploy_with_the_secret_after_bootstrap_restarts_nothing(stack: Stack) -> None:
    """The operator's next `docker stack deploy`, now naming the secret bootstrap created:
    the service already runs exactly that, so no replica is restarted, all stay unsealed."""
    service = stack.client.services.get(stack.service("vault"))
    template = service.attrs["Spec"]["TaskTemplate"]
    before = {r.slot: r.task_id for r in stack.replicas()}
    mounted = template["ContainerSpec"]["Secrets"][0]
    assert mounted["SecretName"] == stack.env["VAULT_UNSEAL_SECRET"]
    stack.deploy()
    service.reload()
    assert service.attrs["Spec"]["TaskTemplate"] == template
    replicas = stack.converged(3, 60, "3 replicas unsealed after the redeploy")
    assert {r.slot: r.task_id for r in replicas} == before


def test_rolling_restart_every_replica_unsealed_again(stack: Stack) -> None:
    before = {r.slot: r for r in stack.replicas()}
    force = stack.force_update_count()
    started = time.monotonic()
    docker_cli("service", "update", "--detach", "--force", stack.service("vault"))

    def done() -> list[Replica] | None:
        if stack.update_state() != "completed":
            return None
        replicas = stack.all_unsealed(3)
        if replicas is None or any(r.task_id == before[r.slot].task_id for r in replicas):
            return None
        return replicas

    after: list[Replica] = eventually(done, 240, "the rolling restart to complete", 1.0)
    took = time.monotonic() - started
    assert stack.force_update_count() == force + 1
    events = _unsealed_for(stack, after, 60)
    print(f"\nrolling restart (stop-first, one at a time): {took:.1f}s")
    for replica in after:
        old = before[replica.slot].container
        old.reload()
        new = replica.container
        new.reload()
        stopped = parse_ts(old.attrs["State"]["FinishedAt"])
        begun = parse_ts(new.attrs["State"]["StartedAt"])
        sealed = float(events[replica.task_id]["since_start"])
        down = (begun - stopped).total_seconds() + sealed
        print(
            f"{replica.name}: sealed {sealed:.1f}s after its start, "
            f"unavailable {down:.1f}s (old task stopped -> new one unsealed)"
        )
        assert sealed < 60


def test_killed_task_is_replaced_and_unsealed(stack: Stack) -> None:
    victim = next(r for r in stack.replicas() if r.slot == 2)
    started = time.monotonic()
    victim.container.kill(signal="SIGKILL")

    def replaced() -> list[Replica] | None:
        replicas = stack.all_unsealed(3)
        if replicas is None:
            return None
        return None if any(r.task_id == victim.task_id for r in replicas) else replicas

    replicas: list[Replica] = eventually(replaced, 180, "slot 2 replaced and unsealed", 1.0)
    new = next(r for r in replicas if r.slot == 2)
    events = _unsealed_for(stack, [new], 60)
    print(
        f"\nkilled {victim.name}: replaced and unsealed in {time.monotonic() - started:.1f}s "
        f"(sealed {events[new.task_id]['since_start']}s after the new task's start)"
    )


def _distributor_log(stack: Stack) -> str:
    return stack.container_logs("cert-distributor")


def _assert_served_not_after(stack: Stack, replicas: list[Replica], leaf_not_after: dt.datetime):
    for replica in replicas:
        served = stack.served_leaf(replica)
        assert served.not_valid_after_utc == leaf_not_after, replica.name


def test_rotation_restart_mode(stack: Stack) -> None:
    """SWAG writes a renewal -> reloader publishes -> distributor installs and forces one
    rolling restart -> every replica serves the new certificate, unsealed."""
    before = {r.slot: r.task_id for r in stack.replicas()}
    force = stack.force_update_count()
    leaf = stack.new_leaf()
    started = time.monotonic()
    stack.write_swag(leaf)
    replicas: list[Replica] = eventually(
        lambda: stack.serves(leaf) if stack.update_state() == "completed" else None,
        300,
        "every replica to serve the renewed certificate",
        1.0,
    )
    replicas = stack.converged(3, 120, "3 replicas unsealed after the rotation")
    took = time.monotonic() - started
    print(f"\nrestart mode: new certificate served by all replicas in {took:.1f}s")
    _assert_served_not_after(stack, replicas, leaf.cert.not_valid_after_utc)
    # The published and installed files are the renewal, the restart happened exactly once.
    published = (stack.storage_dir / "STAR.iklim.co.full.crt").read_bytes()
    assert published.startswith(leaf.cert_pem)
    assert (stack.node_dir / "STAR.iklim.co.full.crt").read_bytes() == published
    assert stack.force_update_count() == force + 1
    assert all(r.task_id != before[r.slot] for r in replicas)
    assert "event=vault_restarted" in _distributor_log(stack)
    # The distributor's own check of the served certificate passes too.
    eventually(lambda: "event=vault_serving" in _distributor_log(stack), 120, "event=vault_serving")


def test_rotation_sighup_mode_never_sealed(stack: Stack) -> None:
    """The same flow with --vault-reload sighup: a hot reload, no task replaced, no replica
    ever sealed while the new certificate takes over."""
    docker_cli(
        "service",
        "update",
        "--detach",
        "--env-add",
        "VAULT_ENTRYPOINT_DISTRIBUTOR_VAULT_RELOAD=sighup",
        stack.service("cert-distributor"),
    )
    eventually(
        lambda: _distributor_running_with_sighup(stack), 90, "a distributor in sighup mode", 1.0
    )
    before = {r.slot: r.task_id for r in stack.replicas()}
    force = stack.force_update_count()
    leaf = stack.new_leaf()
    started = time.monotonic()
    stack.write_swag(leaf)
    sealed_seen: list[str] = []

    def served_and_never_sealed() -> list[Replica] | None:
        for replica in stack.replicas():
            status = stack.status(replica)
            if status is None or status.get("sealed") is not False:
                sealed_seen.append(f"{replica.name}: {status}")
        return stack.serves(leaf)

    replicas: list[Replica] = eventually(
        served_and_never_sealed, 120, "every replica to serve the renewed certificate", 0.5
    )
    took = time.monotonic() - started
    print(f"\nsighup mode: new certificate served by all replicas in {took:.1f}s")
    assert sealed_seen == []
    assert {r.slot: r.task_id for r in replicas} == before, "a task was replaced"
    assert stack.force_update_count() == force
    _assert_served_not_after(stack, replicas, leaf.cert.not_valid_after_utc)
    assert "event=vault_signalled" in _distributor_log(stack)
    eventually(
        lambda: _distributor_log(stack).count("event=vault_serving") >= 2,
        60,
        "the distributor's served-certificate check in sighup mode",
    )


def _distributor_running_with_sighup(stack: Stack) -> bool:
    containers = stack.client.containers.list(
        filters={"label": f"com.docker.swarm.service.name={stack.service('cert-distributor')}"}
    )
    for container in containers:
        container.reload()
    return any(
        "VAULT_ENTRYPOINT_DISTRIBUTOR_VAULT_RELOAD=sighup" in c.attrs["Config"]["Env"]
        for c in containers
    )


def test_no_unseal_key_text_in_any_service_log(stack: Stack) -> None:
    assert stack.init is not None
    texts = stack.init.texts()
    for short in ("vault", "cert-reloader", "cert-distributor"):
        for source in (stack.logs(short), stack.container_logs(short)):
            assert source.strip(), f"no logs for {short}"
            for text in texts:
                assert text not in source, f"secret text in the logs of {short}"
    # The unseal key as it sits in the secret file, split or re-encoded, is not there either.
    assert not re.search(re.escape(texts[0][:16]), stack.all_logs())
