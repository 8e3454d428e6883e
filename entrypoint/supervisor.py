"""PID-1 duties: spawn the server, forward signals, reap every child, exit with the server's status.

Signal handlers only record the signal number; the main loop (``Supervisor.wait``) acts on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType

from entrypoint import logs
from entrypoint.errors import ServerNotFound

log = logging.getLogger(__name__)

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
STOPPING = (signal.SIGTERM, signal.SIGINT)
_PR_SET_CHILD_SUBREAPER = 36


class SignalRecorder:
    """Records signals and wakes a waiting loop through a self-pipe (``signal.set_wakeup_fd``)."""

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.stop_requested: int | None = None
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        # No I/O and no logging here: the main loop reads ``pending``.
        self.pending.append(signum)
        if signum in STOPPING and self.stop_requested is None:
            self.stop_requested = signum

    def wait(self, timeout: float) -> None:
        """Sleep until ``timeout`` passes or a signal arrives."""
        if self.pending:
            return
        ready, _, _ = select.select([self._read_fd], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read_fd, 512):
                    pass

    @contextlib.contextmanager
    def installed(self, signals: Sequence[int]) -> Iterator[SignalRecorder]:
        previous = {s: signal.signal(s, self._handler) for s in signals}
        old_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        try:
            yield self
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self._read_fd)
            os.close(self._write_fd)


def become_subreaper() -> bool:
    """Adopt orphaned descendants even when not PID 1 (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    if os.getpid() == 1 or not sys.platform.startswith("linux"):
        return os.getpid() == 1
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def exit_code_from_status(status: int) -> int:
    """The shell's convention: the exit code, or 128+N for death by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Supervisor:
    """Owns the server child process: spawn, signal forwarding, reaping, stop grace."""

    def __init__(self, recorder: SignalRecorder, stop_grace: float) -> None:
        self._recorder = recorder
        self._stop_grace = stop_grace
        self._lock = threading.Lock()
        self.pid: int | None = None
        self.exit_code: int | None = None

    def spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        try:
            # A process group of its own: a terminal's Ctrl-C reaches only us, and we forward it.
            pid = os.posix_spawn(argv[0], list(argv), dict(env), setpgroup=0)
        except FileNotFoundError:
            raise ServerNotFound(f"server binary {argv[0]} not found") from None
        except PermissionError:
            raise ServerNotFound(f"server binary {argv[0]} is not executable") from None
        self.pid = pid
        return pid

    @property
    def running(self) -> bool:
        return self.pid is not None and self.exit_code is None

    def send_signal(self, signum: int) -> bool:
        """Signal the server if it is still ours (safe from any thread)."""
        with self._lock:
            if not self.running or self.pid is None:
                return False
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                return False
            return True

    def reap(self) -> None:
        """Collect every exited child: the server and any orphan we inherited."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                with self._lock:
                    self.exit_code = exit_code_from_status(status)
            else:
                logs.event(log, "orphan_reaped", logging.DEBUG, pid=pid, status=status)

    def wait(self) -> int:
        """Run the supervision loop until the server exits; return the wrapper's exit code."""
        kill_at: float | None = None
        while True:
            self.reap()
            if self.exit_code is not None:
                return self.exit_code
            while self._recorder.pending:
                signum = self._recorder.pending.popleft()
                if signum == signal.SIGCHLD:
                    continue
                name = signal.Signals(signum).name
                forwarded = self.send_signal(signum)
                logs.event(log, "signal_forwarded", signal=name, pid=self.pid, delivered=forwarded)
                if signum in STOPPING and kill_at is None:
                    kill_at = time.monotonic() + self._stop_grace
            timeout = 1.0
            if kill_at is not None:
                remaining = kill_at - time.monotonic()
                if remaining <= 0:
                    logs.event(
                        log,
                        "stop_grace_expired",
                        logging.WARNING,
                        grace=self._stop_grace,
                        pid=self.pid,
                    )
                    self.send_signal(signal.SIGKILL)
                    kill_at = float("inf")
                    remaining = 1.0
                timeout = min(timeout, remaining)
            self._recorder.wait(timeout)
