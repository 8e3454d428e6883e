"""Every wait of the unseal loop and the TLS watcher, defined once and named for what it waits on.

All of them sleep through ``threading.Event.wait`` so that a stopping wrapper never sits out a
backoff.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tenacity
from tenacity import RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from entrypoint.errors import (
    NotEnoughShares,
    UnsealKeyRejected,
    UnsealKeyUnavailable,
    UnsealPending,
    VaultNotInitialized,
    VaultTLSError,
    VaultUnreachable,
)


@dataclass(frozen=True)
class UnsealTimings:
    retry_max_wait: float = 5.0
    rejected_backoff: float = 30.0
    watch_interval: float = 10.0


def listener_backoff(cap: float) -> wait_base:
    """Vault not answering yet: the first retry within 100 ms, growing gently, capped."""
    jitter = min(0.02, cap / 10)
    return tenacity.wait_exponential(multiplier=0.05, max=cap - jitter, exp_base=1.5) + (
        tenacity.wait_random(0, jitter)
    )


def not_initialized_poll(cap: float) -> wait_base:
    """A raft follower that has not joined yet, or a Vault waiting for its operator."""
    return tenacity.wait_fixed(min(1.0, cap)) + tenacity.wait_random(0, 0.1)


def key_unavailable_poll(cap: float) -> wait_base:
    """The secret file is missing, empty or unreadable: look again soon."""
    return tenacity.wait_fixed(cap) + tenacity.wait_random(0, cap / 10)


def rejected_backoff(seconds: float) -> wait_base:
    """Vault refused the key: back off long, the operator has to change the secret."""
    return tenacity.wait_fixed(seconds) + tenacity.wait_random(0, seconds / 10)


class wait_by_error(wait_base):
    """Choose the wait by the last error; exponential waits count only consecutive repeats."""

    def __init__(self, policies: dict[type[BaseException], wait_base], default: wait_base) -> None:
        self._policies = policies
        self._default = default
        self._last: type[BaseException] | None = None
        self._streak = 0

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        kind = type(exc) if exc is not None else None
        self._streak = self._streak + 1 if kind is self._last else 1
        self._last = kind
        policy = self._default
        for error_type, candidate in self._policies.items():
            if exc is not None and isinstance(exc, error_type):
                policy = candidate
                break
        view: Any = _StreakView(retry_state, self._streak)
        return float(policy(view))


class _StreakView:
    """A RetryCallState whose attempt number is the streak of the same error."""

    def __init__(self, state: RetryCallState, attempt_number: int) -> None:
        self._state = state
        self.attempt_number = attempt_number

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


class stop_when(stop_base):
    """Stop retrying as soon as the predicate holds (the wrapper is shutting down)."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._predicate()


def _sleeper(wait: Callable[[float], Any]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        wait(seconds)

    return sleep


RETRYABLE = (
    UnsealPending,
    VaultUnreachable,
    VaultTLSError,
    VaultNotInitialized,
    UnsealKeyUnavailable,
    UnsealKeyRejected,
    NotEnoughShares,
)


def unseal_retrying(
    timings: UnsealTimings,
    stop: threading.Event,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> tenacity.Retrying:
    """The retry policy of the unseal loop: forever, until unsealed or stopped."""
    cap = timings.retry_max_wait
    waits = wait_by_error(
        {
            VaultUnreachable: listener_backoff(cap),
            VaultTLSError: key_unavailable_poll(cap),
            VaultNotInitialized: not_initialized_poll(cap),
            UnsealPending: not_initialized_poll(cap),
            UnsealKeyUnavailable: key_unavailable_poll(cap),
            UnsealKeyRejected: rejected_backoff(timings.rejected_backoff),
            NotEnoughShares: rejected_backoff(timings.rejected_backoff),
        },
        default=listener_backoff(cap),
    )
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RETRYABLE),
        wait=waits,
        stop=stop_when(stop.is_set),
        sleep=_sleeper(stop.wait),
        before_sleep=before_sleep,
        reraise=True,
    )


def never() -> bool:
    """``should_stop`` for a caller with nothing that stops it early (a one-shot command)."""
    return False


def until_deadline(
    deadline: float,
    interval: float,
    retry_on: tuple[type[BaseException], ...],
    sleep: Callable[[float], Any],
    should_stop: Callable[[], bool],
) -> tenacity.Retrying:
    """Poll at a fixed interval until something holds, giving up after ``deadline`` seconds."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=tenacity.wait_fixed(interval),
        stop=tenacity.stop_any(tenacity.stop_after_delay(deadline), stop_when(should_stop)),
        sleep=_sleeper(sleep),
        reraise=True,
    )


def service_update_retrying(
    attempts: int,
    retry_on: tuple[type[BaseException], ...],
    sleep: Callable[[float], Any],
    should_stop: Callable[[], bool],
) -> tenacity.Retrying:
    """Swarm said "update out of sequence": read the service again and retry, soon and briefly."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0) + tenacity.wait_random(0, 0.2),
        stop=tenacity.stop_any(tenacity.stop_after_attempt(attempts), stop_when(should_stop)),
        sleep=_sleeper(sleep),
        reraise=True,
    )
