"""PID-1 duties as a black box: real child processes, signals, exit codes, reaping."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.devserver import LocalNode
from tests.helpers import need
from tests.helpers.proc import children_of, descendants, process_state, wait_until
from tests.integration.conftest import Launcher, Template, sealed

FAKE_SERVER = """\
#!{python}
# Stands in for `vault server`: reports each signal, exits on TERM/INT with code {term_code}.
import os, signal, subprocess, sys, time
got = []
def handler(signum, frame):
    got.append(signum)
    print("fake-server got " + signal.Signals(signum).name, flush=True)
    if signum in (signal.SIGTERM, signal.SIGINT) and {exit_on_term}:
        sys.exit({term_code})
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
          signal.SIGUSR2):
    signal.signal(s, handler)
mode = {mode!r}
if mode == "orphans":
    # Grandchildren whose parent exits at once: they are re-parented to PID 1 / the subreaper.
    for _ in range(5):
        subprocess.Popen(["sh", "-c", "sleep 0.3 & exit 0"]).wait()
print("fake-server argv=" + " ".join(sys.argv[1:]), flush=True)
print("fake-server ready pid=%d" % os.getpid(), flush=True)
if mode == "exit3":
    sys.exit(3)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.05)
"""


def fake_server(
    tmp_path: Path, mode: str = "wait", exit_on_term: bool = True, code: int = 0
) -> str:
    path = tmp_path / f"fake-server-{mode}"
    path.write_text(
        FAKE_SERVER.format(
            python=sys.executable, mode=mode, exit_on_term=exit_on_term, term_code=code
        )
    )
    path.chmod(0o755)
    return str(path)


def test_forwards_every_signal_and_exits_with_the_servers_code(
    node: LocalNode, launcher: Launcher, key_path: Path, tmp_path: Path
) -> None:
    proc = launcher.run(
        node, key_path, "run", "--", "-log-level=debug", VAULT_BINARY=fake_server(tmp_path, code=7)
    )
    proc.wait_for(r"fake-server ready")
    assert f"fake-server argv=server -config={node.config_path} -log-level=debug" in proc.output()
    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        proc.signal(sig)
        proc.wait_for(rf"fake-server got {sig.name}")
        assert proc.popen.poll() is None, f"wrapper died from {sig.name}"
    proc.signal(signal.SIGTERM)
    assert proc.wait_exit(deadline=10) == 7
    assert "fake-server got SIGTERM" in proc.output()
    assert "event=server_exited code=7" in proc.output()


def test_sigint_is_forwarded_once(
    node: LocalNode, launcher: Launcher, key_path: Path, tmp_path: Path
) -> None:
    proc = launcher.run(node, key_path, VAULT_BINARY=fake_server(tmp_path, code=0))
    proc.wait_for(r"fake-server ready")
    proc.signal(signal.SIGINT)
    assert proc.wait_exit(deadline=10) == 0
    assert proc.output().count("fake-server got SIGINT") == 1


def test_stop_grace_then_kill(
    node: LocalNode, launcher: Launcher, key_path: Path, tmp_path: Path
) -> None:
    binary = fake_server(tmp_path, exit_on_term=False)
    proc = launcher.run(node, key_path, VAULT_BINARY=binary, VAULT_ENTRYPOINT_STOP_GRACE="1")
    proc.wait_for(r"fake-server ready")
    proc.signal(signal.SIGTERM)
    proc.wait_for(r"fake-server got SIGTERM")
    assert proc.wait_exit(deadline=15) == 128 + signal.SIGKILL
    assert "event=stop_grace_expired" in proc.output()


def test_server_exit_code_passes_through(
    node: LocalNode, launcher: Launcher, key_path: Path, tmp_path: Path
) -> None:
    proc = launcher.run(node, key_path, VAULT_BINARY=fake_server(tmp_path, mode="exit3"))
    assert proc.wait_exit(deadline=15) == 3


def test_real_server_sigterm_sighup_and_sigkill(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
) -> None:
    sealed(node, templates(1, 1), key_path)

    proc = launcher.run(node, key_path)
    proc.wait_for(r"event=unsealed")
    server_pid = int(proc.wait_for(r"event=server_started pid=(\d+)").group(1))
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"event=signal_forwarded signal=SIGHUP")
    proc.wait_for(r"(?i)reload")  # OpenBao's own log line, passed through untouched
    assert proc.popen.poll() is None
    assert node.seal_status()["sealed"] is False
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait_exit(deadline=30) == 0
    print(f"wrapper exited {time.monotonic() - started:.2f}s after SIGTERM")
    assert process_state(server_pid) is None
    assert "shutdown triggered" in proc.output()

    second = launcher.run(node, key_path)
    second.wait_for(r"event=unsealed")
    server_pid = int(second.wait_for(r"event=server_started pid=(\d+)").group(1))
    os.kill(server_pid, signal.SIGKILL)
    assert second.wait_exit(deadline=15) == 137


@pytest.mark.parametrize("as_pid1", [True, False], ids=["pid1-unshare", "subreaper"])
def test_orphaned_grandchildren_are_reaped(
    node: LocalNode, launcher: Launcher, key_path: Path, tmp_path: Path, as_pid1: bool
) -> None:
    prefix: tuple[str, ...] = ()
    if as_pid1:
        unshare = shutil.which("unshare")
        need(unshare is not None, "unshare (util-linux) is not installed")
        prefix = (str(unshare), "--pid", "--fork", "--kill-child")
    proc = launcher.run(
        node, key_path, prefix=prefix, VAULT_BINARY=fake_server(tmp_path, "orphans")
    )
    proc.wait_for(r"fake-server ready")
    if as_pid1:
        proc.wait_for(r"event=reaper pid1=true")
        (wrapper_pid,) = children_of(proc.pid)
    else:
        proc.wait_for(r"event=reaper pid1=false subreaper=true")
        wrapper_pid = proc.pid

    def orphans_gone() -> bool:
        # Only the fake server itself remains below the wrapper: no zombies, no sleepers.
        below = descendants(wrapper_pid)
        return len(below) == 1 and process_state(below[0]) not in (None, "Z")

    wait_until(orphans_gone, deadline=10, what=f"orphans reaped below {wrapper_pid}")
    assert [p for p in descendants(wrapper_pid) if process_state(p) == "Z"] == []
    # To the wrapper itself: as PID 1 of a namespace it only gets signals it has handlers for.
    os.kill(wrapper_pid, signal.SIGTERM)
    assert proc.wait_exit(deadline=10) == 0
    assert "fake-server got SIGTERM" in proc.output()
