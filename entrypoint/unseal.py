"""The retry-unseal loop: read seal status, submit the key shares until unsealed, then watch."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from tenacity import RetryCallState

from entrypoint import logs, waits
from entrypoint.errors import (
    EntrypointError,
    NotEnoughShares,
    UnsealKeyRejected,
    UnsealPending,
    VaultNotInitialized,
    VaultTLSError,
    VaultUnreachable,
)
from entrypoint.keys import Secret, read_key_file
from entrypoint.vault import Connector, SealStatus

log = logging.getLogger(__name__)


def unseal_once(connector: Connector, key_file: Path) -> SealStatus:
    """One pass: status, then (if sealed) a fresh read of the secret and its shares submitted.

    Raises a typed error for every state that is not "unsealed".
    """
    status = connector.seal_status()
    if not status.initialized:
        raise VaultNotInitialized("Vault reports initialized=false (not initialized or not joined)")
    if not status.sealed:
        return status
    shares = read_key_file(key_file)
    if status.threshold and len(shares) < status.threshold:
        raise NotEnoughShares(
            f"secret holds {len(shares)} share(s) but Vault's threshold is {status.threshold}"
        )
    return submit_shares(connector, status, shares)


def submit_shares(
    connector: Connector, status: SealStatus, shares: tuple[Secret, ...]
) -> SealStatus:
    """Submit ``shares`` to a sealed Vault (stale progress reset first) until it unseals."""
    if status.progress:
        logs.event(log, "unseal_progress_reset", stale_progress=status.progress)
        connector.reset_unseal()
    for share in shares:
        status = connector.submit_share(share)
        if not status.sealed:
            return status
    # A wrong share is refused with an error (raised by submit_share); this is not that.
    raise UnsealPending(
        f"Vault accepted {len(shares)} share(s) and is still sealed (raft follower catching up?)"
    )


class Unsealer:
    """Runs beside supervision: unseal as soon as possible, then keep watching."""

    def __init__(
        self,
        connector: Connector,
        key_file: Path,
        timings: waits.UnsealTimings,
        stop: threading.Event,
        reunseal: bool = False,
        started: float | None = None,
    ) -> None:
        self._connector = connector
        self._key_file = key_file
        self._timings = timings
        self._stop = stop
        self._reunseal = reunseal
        self._started = started if started is not None else time.monotonic()
        self._last_state: tuple[type[BaseException], str] | None = None
        self.unsealed_count = 0

    def run(self) -> None:
        while not self._stop.is_set():
            if self.until_unsealed() is None:
                return
            if not self.watch():
                return

    def until_unsealed(self) -> SealStatus | None:
        """Retry until unsealed; None when stopped first."""
        phase_start = time.monotonic()
        retrying = waits.unseal_retrying(self._timings, self._stop, self._before_sleep)
        try:
            for attempt in retrying:
                with attempt:
                    status = unseal_once(self._connector, self._key_file)
        except waits.RETRYABLE:
            return None  # stopped while waiting
        attempts = retrying.statistics.get("attempt_number", 1)
        now = time.monotonic()
        self.unsealed_count += 1
        self._last_state = None
        logs.event(
            log,
            "unsealed",
            attempts=attempts,
            seconds=round(now - phase_start, 3),
            since_start=round(now - self._started, 3),
            threshold=status.threshold,
            version=status.version,
        )
        return status

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is None:
            return
        key = (type(exc), str(exc))
        changed = key != self._last_state
        self._last_state = key
        details: dict[str, Any] = {
            "attempt": state.attempt_number,
            "retry_in": round(state.upcoming_sleep, 3),
        }
        if isinstance(exc, (UnsealKeyRejected, NotEnoughShares)):
            # Loud every time: Vault stays sealed until an operator fixes the secret.
            logs.event(
                log,
                "unseal_key_rejected",
                logging.ERROR,
                reason=str(exc),
                key_file=str(self._key_file),
                **details,
            )
        elif not changed:
            return
        elif isinstance(exc, VaultUnreachable):
            logs.event(log, "vault_unreachable", reason=str(exc), **details)
        elif isinstance(exc, VaultTLSError):
            logs.event(log, "vault_tls_untrusted", logging.ERROR, reason=str(exc), **details)
        elif isinstance(exc, UnsealPending):
            logs.event(log, "unseal_pending", reason=str(exc), **details)
        elif isinstance(exc, VaultNotInitialized):
            logs.event(log, "vault_not_initialized", logging.WARNING, reason=str(exc), **details)
        elif isinstance(exc, EntrypointError):
            logs.event(log, "unseal_key_unavailable", logging.ERROR, reason=str(exc), **details)

    def watch(self) -> bool:
        """Check the seal at an interval; True when it was resealed and should be unsealed."""
        problem: str | None = None
        while not self._stop.wait(self._timings.watch_interval):
            try:
                status = self._connector.seal_status()
            except (VaultUnreachable, VaultTLSError) as exc:
                if problem != str(exc):
                    problem = str(exc)
                    logs.event(log, "watch_unreachable", logging.WARNING, reason=problem)
                continue
            if status.sealed or not status.initialized:
                logs.event(
                    log,
                    "resealed",
                    logging.WARNING,
                    reunseal=self._reunseal,
                    hint="" if self._reunseal else "left sealed; set --reunseal to unseal again",
                )
                if self._reunseal:
                    return True
                problem = "sealed"
                self._wait_until_unsealed_by_hand()
                continue
            if problem is not None:
                logs.event(log, "watch_recovered", previous=problem)
                problem = None
        return False

    def _wait_until_unsealed_by_hand(self) -> None:
        while not self._stop.wait(self._timings.watch_interval):
            try:
                if not self._connector.seal_status().sealed:
                    logs.event(log, "unsealed_externally")
                    return
            except (VaultUnreachable, VaultTLSError):
                continue
