"""`vault-entrypoint run` against a real OpenBao server: the retry-unseal loop."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.devserver import LocalNode
from tests.integration.conftest import KNOWN, Launcher, Template, sealed, with_data, write_key_file

UNSEALED = r"event=unsealed attempts=(\d+)"


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_sealed_server_is_unsealed_and_child_env_is_clean(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    log_format: str,
) -> None:
    template = templates(1, 1)
    with_data(node, template)
    write_key_file(key_path, template.keys[0] + "\n")
    proc = launcher.run(
        node,
        key_path,
        VAULT_ENTRYPOINT_LOG_FORMAT=log_format,
        # OpenBao would read this as a second config and die on a double bind.
        VAULT_CONFIG_PATH=str(node.config_path),
        VAULT_TOKEN=template.init["root_token"],
    )
    if log_format == "json":
        proc.wait_for(r'"event": "unsealed"')
        events = [
            json.loads(line)
            for line in proc.output().splitlines()
            if line.startswith("{") and '"vault-entrypoint"' in line
        ]
        unsealed = [e for e in events if e["event"] == "unsealed"]
        assert unsealed and unsealed[0]["attempts"] >= 1 and "since_start" in unsealed[0]
        assert {e["event"] for e in events} >= {"certs_ok", "server_started", "unsealed"}
    else:
        proc.wait_for(UNSEALED)
    status = node.seal_status()
    assert status["sealed"] is False and status["initialized"] is True

    server_pid = (
        int(proc.wait_for(r"event=server_started pid=(\d+)").group(1))
        if (log_format == "text")
        else next(
            json.loads(line)["pid"]
            for line in proc.output().splitlines()
            if '"event": "server_started"' in line
        )
    )
    child_env = proc_environ(server_pid)
    for name in (
        "VAULT_CONFIG_PATH",
        "VAULT_UNSEAL_KEY_FILE",
        "VAULT_BINARY",
        "VAULT_CERTS_DIR",
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_ENTRYPOINT_RETRY_MAX_WAIT",
    ):
        assert name not in child_env, name
    environ_text = Path(f"/proc/{server_pid}/environ").read_text()
    cmdline = Path(f"/proc/{server_pid}/cmdline").read_text()
    wrapper_cmdline = Path(f"/proc/{proc.pid}/cmdline").read_text()
    for text in (environ_text, cmdline, wrapper_cmdline):
        assert not KNOWN.leaks(text)
    assert cmdline.split("\0")[1:3] == ["server", f"-config={node.config_path}"]


@pytest.mark.parametrize("layout", ["lines", "init-json"])
def test_threshold_three_of_five(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    layout: str,
) -> None:
    template = templates(5, 3)
    with_data(node, template)
    if layout == "lines":
        text = "# three of five shares\n" + "\n".join(template.keys[1:4]) + "\n"
    else:
        text = json.dumps(template.init, indent=2)
    write_key_file(key_path, text)
    proc = launcher.run(node, key_path)
    proc.wait_for(r"event=unsealed .*threshold=3")
    assert node.seal_status()["sealed"] is False


def test_not_enough_shares_is_rejected_and_vault_stays_up(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
) -> None:
    template = templates(5, 3)
    with_data(node, template)
    write_key_file(key_path, "\n".join(template.keys[:2]))
    proc = launcher.run(node, key_path)
    proc.wait_for(r"event=unseal_key_rejected .*2 share\(s\) but Vault's threshold is 3")
    assert node.seal_status()["sealed"] is True
    write_key_file(key_path, "\n".join(template.keys[:3]))
    proc.wait_for(UNSEALED)


def test_not_initialized_then_initialized_by_operator(
    node: LocalNode, launcher: Launcher, key_path: Path
) -> None:
    proc = launcher.run(node, key_path)
    proc.wait_for(r"event=vault_not_initialized", deadline=30)
    assert node.seal_status()["initialized"] is False
    # The wrapper never initializes: still uninitialized after a few more polls.
    time.sleep(1.5)
    assert node.seal_status()["initialized"] is False
    init = node.initialize(1, 1)
    KNOWN.add(*init["keys_base64"], init["root_token"])
    write_key_file(key_path, init["keys_base64"][0])
    proc.wait_for(UNSEALED, deadline=30)
    assert proc.output().count("event=vault_not_initialized") == 1  # once per state change
    assert node.seal_status()["sealed"] is False


def test_slow_listener_is_retried(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    bao: str,
    tmp_path: Path,
) -> None:
    sealed(node, templates(1, 1), key_path)
    slow = tmp_path / "slow-bao"
    slow.write_text(f'#!/bin/sh\nsleep 2\nexec "{bao}" "$@"\n')
    slow.chmod(0o755)
    proc = launcher.run(node, key_path, VAULT_BINARY=str(slow))
    proc.wait_for(r"event=vault_unreachable reason=\"seal-status: connection refused\"")
    attempts = int(proc.wait_for(UNSEALED, deadline=30).group(1))
    assert attempts > 3
    assert proc.output().count("event=vault_unreachable") == 1  # said once, not per retry


def test_wrong_key_is_rejected_then_corrected_without_restart(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
) -> None:
    template = templates(1, 1)
    with_data(node, template)
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    KNOWN.add(wrong)
    write_key_file(key_path, wrong)
    proc = launcher.run(node, key_path)
    proc.wait_for(r"level=error component=unseal event=unseal_key_rejected", count=2)
    server_pid = int(proc.wait_for(r"event=server_started pid=(\d+)").group(1))
    assert proc.popen.poll() is None, "the wrapper must keep running"
    assert os.path.exists(f"/proc/{server_pid}"), "Vault must keep running"
    assert node.seal_status()["sealed"] is True
    write_key_file(key_path, template.keys[0])
    proc.wait_for(UNSEALED)
    assert node.seal_status()["sealed"] is False


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        ("missing", r"secret file \S+ does not exist"),
        ("empty", r"secret file is empty"),
        ("unreadable", r"secret file \S+ is a directory"),
        ("garbage", r"key line 1 is neither base64 nor hex"),
    ],
)
def test_secret_file_problems_are_logged_and_vault_keeps_running(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    prepare: str,
    reason: str,
) -> None:
    template = templates(1, 1)
    with_data(node, template)
    if prepare == "empty":
        write_key_file(key_path, "\n\n")
    elif prepare == "unreadable":
        key_path.mkdir()
    elif prepare == "garbage":
        write_key_file(key_path, "this is not a key!\n")
    proc = launcher.run(node, key_path)
    proc.wait_for(r"level=error component=unseal event=unseal_key_unavailable reason=\"?" + reason)
    server_pid = int(proc.wait_for(r"event=server_started pid=(\d+)").group(1))
    proc.wait_for(r"event=tls_trust")
    assert os.path.exists(f"/proc/{server_pid}") and proc.popen.poll() is None
    assert node.seal_status()["sealed"] is True
    if key_path.is_dir():
        key_path.rmdir()
    write_key_file(key_path, template.keys[0])
    proc.wait_for(UNSEALED)


@pytest.mark.parametrize("reunseal", [True, False])
def test_resealed_replica_is_unsealed_again_only_with_reunseal(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    reunseal: bool,
) -> None:
    template = sealed(node, templates(1, 1), key_path)
    proc = launcher.run(node, key_path, VAULT_ENTRYPOINT_REUNSEAL=str(reunseal).lower())
    proc.wait_for(UNSEALED)
    # An operator seals the replica (an intrusion response, say).
    code, _ = node.api("PUT", "/v1/sys/seal", token=template.init["root_token"])
    assert code == 204
    proc.wait_for(
        rf"level=warning component=unseal event=resealed reunseal={str(reunseal).lower()}"
    )
    if reunseal:
        proc.wait_for(UNSEALED, count=2)
        assert node.seal_status()["sealed"] is False
    else:
        # Several watch intervals later it is still sealed, and the wrapper only watched.
        time.sleep(2.0)  # four watch intervals: an absence of action needs a window
        assert node.seal_status()["sealed"] is True
        assert proc.output().count("event=unsealed ") == 1
        # Unsealing by hand is noticed.
        code, _ = node.api("PUT", "/v1/sys/unseal", {"key": template.keys[0]})
        assert code == 200
        proc.wait_for(r"event=unsealed_externally")
    assert key_path.stat().st_mode & 0o777 == 0o600
