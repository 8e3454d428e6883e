"""Real processes under test: start, wait for a log line with a deadline, kill the whole tree."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ENTRYPOINT = Path(sys.executable).parent / "vault-entrypoint"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) comes after the parenthesised command name.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            result.append(child)
            todo.append(child)
    return result


def process_state(pid: int) -> str | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state != "Z"


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything below it (by pid: only what the test started)."""
    for victim in [*reversed(descendants(pid)), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


class Proc:
    """A command whose combined output goes to a file we can search while it runs."""

    def __init__(
        self, argv: list[str], env: Mapping[str, str], log_path: Path, prefix: Iterable[str] = ()
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            [*prefix, *argv], env=dict(env), stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, deadline: float = 30.0, count: int = 1) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) matched ``count`` times; fail with the output."""
        end = time.monotonic() + deadline
        regex = re.compile(pattern)
        while True:
            matches = list(regex.finditer(self.output()))
            if len(matches) >= count:
                return matches[count - 1]
            if self.popen.poll() is not None:
                # One last look: the line may have been written just before exiting.
                matches = list(regex.finditer(self.output()))
                if len(matches) >= count:
                    return matches[count - 1]
                pytest.fail(
                    f"exited with {self.popen.returncode} before /{pattern}/ appeared:\n"
                    + self.output()[-6000:]
                )
            if time.monotonic() > end:
                pytest.fail(
                    f"/{pattern}/ did not appear within {deadline}s:\n{self.output()[-6000:]}"
                )
            time.sleep(0.05)

    def wait_exit(self, deadline: float = 30.0) -> int:
        try:
            return self.popen.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {deadline}s:\n{self.output()[-6000:]}")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def stop(self) -> None:
        if self.popen.poll() is None:
            kill_tree(self.pid)
            self.popen.wait(timeout=30)
        else:
            # The process is gone; orphans it left would have been re-parented away from us.
            pass
        self._log.close()


def wait_until(predicate: object, deadline: float, what: str, interval: float = 0.05) -> None:
    end = time.monotonic() + deadline
    check = predicate if callable(predicate) else None
    assert check is not None
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline}s\n{ps_forest()}")
        time.sleep(interval)


def ps_forest() -> str:
    """Our process tree, for failure messages."""
    lines = []
    for pid in sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
        try:
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            stat = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        lines.append(f"{pid:>7} {stat[1]:>7} {stat[0]} {cmd.decode(errors='replace')[:120]}")
    return "\n".join(lines[-60:])
