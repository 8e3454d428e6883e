"""Shared test helpers: the CI rule (a missing real dependency fails, never skips)."""

from __future__ import annotations

import os

import pytest

CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def need(available: bool, reason: str) -> None:
    """Skip locally when a real dependency is missing; fail under CI=true."""
    if available:
        return
    if CI:
        pytest.fail(f"CI=true and a real dependency is missing: {reason}", pytrace=False)
    pytest.skip(reason)
