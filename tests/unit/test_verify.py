"""verify's pure parts: the checks' logic on Docker's answers, the log summary, the output."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from entrypoint import verify
from entrypoint.verify import Check, VerifyConfig


def _task(node: str, state: str = "running", port: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state}
    if port:
        status["PortStatus"] = {
            "Ports": [{"TargetPort": 8200, "PublishedPort": port, "PublishMode": "host"}]
        }
    return {"ID": f"task-{node}-{state}-0000000", "NodeID": node, "Status": status}


class _Api:
    def __init__(self, tasks: dict[str, list[dict[str, Any]]]) -> None:
        self._tasks = tasks

    def inspect_service(self, name: str) -> dict[str, Any]:
        if name not in self._tasks:
            import docker.errors

            raise docker.errors.NotFound("no such service")
        return {"Spec": {"Mode": {"Replicated": {"Replicas": 2}}}}

    def tasks(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        return self._tasks[filters["service"]]


class _Client:
    def __init__(self, tasks: dict[str, list[dict[str, Any]]]) -> None:
        self.api = _Api(tasks)


NODES = {"n1": ("node-one", "10.0.0.1"), "n2": ("node-two", "10.0.0.2")}
CFG = VerifyConfig()


def test_distributor_must_run_on_every_vault_node() -> None:
    vault = [_task("n1"), _task("n2")]
    ok = _Client({CFG.distributor_service: [_task("n1"), _task("n2")]})
    assert verify.check_distributor(ok, CFG, vault, NODES).ok
    one = _Client({CFG.distributor_service: [_task("n1"), _task("n2", "pending")]})
    check = verify.check_distributor(one, CFG, vault, NODES)
    assert not check.ok and check.name == "distributor_on_vault_nodes"
    assert "node-two" in check.detail and "node-one" not in check.detail
    zero = _Client({CFG.distributor_service: []})
    assert verify.check_distributor(zero, CFG, vault, NODES).data["missing_nodes"] == [
        "node-one",
        "node-two",
    ]
    gone = _Client({})
    assert "not found" in verify.check_distributor(gone, CFG, vault, NODES).detail


def test_vault_tasks_must_all_run() -> None:
    client = _Client({CFG.vault_service: []})
    assert verify.check_vault_tasks(client, CFG, [_task("n1"), _task("n2")]).ok
    check = verify.check_vault_tasks(client, CFG, [_task("n1"), _task("n2", "starting")])
    assert not check.ok and "starting" in check.detail
    assert not verify.check_vault_tasks(client, CFG, [_task("n1")]).ok  # 1 of 2 replicas
    assert not verify.check_vault_tasks(_Client({}), CFG, None).ok


def test_replica_addresses_come_from_host_mode_ports_then_the_options() -> None:
    tasks = [_task("n1", port=8200), _task("n2", port=18200), _task("n2", "starting", 1)]
    cfg = VerifyConfig(vault_addrs=("https://vault.iklim.co:8200",))
    assert verify.replica_addrs(tasks, NODES, cfg) == [
        "https://10.0.0.1:8200",
        "https://10.0.0.2:18200",
        "https://vault.iklim.co:8200",
    ]


def test_the_reloader_log_summary_fails_only_on_a_final_error() -> None:
    lines = [
        "2025-01-01T00:00:00Z vault-entrypoint level=info component=reloader event=started",
        "2025-01-01T00:00:01Z vault-entrypoint level=warning component=reloader event=not_ready",
        "2025-01-01T00:00:02Z vault-entrypoint level=info component=reloader event=published",
    ]
    check = verify.summarize_log(lines)
    assert check.ok
    assert "info=2" in check.detail and "warning=1" in check.detail
    assert "last event published" in check.detail
    failing = verify.summarize_log([*lines, '{"level": "error", "event": "rejected"}'])
    assert not failing.ok and failing.data["last_events"][-1] == "rejected"
    assert not verify.summarize_log([]).ok


def test_expiry_uses_the_minimum_days() -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert not verify.check_expiry(("sha", soon, None), VerifyConfig(min_days=14)).ok
    assert verify.check_expiry(("sha", soon, None), VerifyConfig(min_days=1)).ok


def test_table_and_json_name_the_failed_checks() -> None:
    checks = [Check("reloader_running", True, "1 task"), Check("served_certificate", False, "x")]
    table = verify.render_table(checks)
    assert "reloader_running    ok" in table and "served_certificate  FAIL    x" in table
    doc = json.loads(verify.render_json(checks))
    assert doc["ok"] is False and doc["failed"] == ["served_certificate"]
