"""Pure logic: logging format, child environment, exit status mapping, waits, atomic files."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import stat
from pathlib import Path

import pytest
import tenacity

from entrypoint import files, logs, waits
from entrypoint.config import resolve_binary, server_environment
from entrypoint.errors import ServerNotFound, UnsealKeyRejected, UnsealPending, VaultUnreachable
from entrypoint.supervisor import exit_code_from_status
from entrypoint.unseal import unseal_once
from entrypoint.vault import SealStatus


def _record(**fields: object) -> logging.LogRecord:
    record = logging.LogRecord("entrypoint.unseal", logging.INFO, __file__, 1, "unsealed", (), None)
    record.fields = fields
    return record


def test_key_value_line() -> None:
    line = logs.KeyValueFormatter().format(_record(attempts=2, seconds=0.0734, reason="a b"))
    assert line.endswith(
        'level=info component=unseal event=unsealed attempts=2 seconds=0.073 reason="a b"'
    )


def test_json_line() -> None:
    doc = json.loads(logs.JsonFormatter().format(_record(attempts=2)))
    assert doc["event"] == "unsealed" and doc["attempts"] == 2 and doc["component"] == "unseal"


def test_server_environment_drops_wrapper_settings_and_secrets() -> None:
    env = {
        "PATH": "/bin",
        "VAULT_API_ADDR": "https://vault-1:8200",
        "VAULT_LOG_LEVEL": "debug",
        "VAULT_CONFIG_PATH": "/vault/config/x.hcl",
        "BAO_CONFIG_PATH": "/vault/config/x.hcl",
        "VAULT_UNSEAL_KEY_FILE": "/run/secrets/k",
        "VAULT_UNSEAL_KEY": "abc",
        "VAULT_TOKEN": "s.x",
        "VAULT_ENTRYPOINT_STOP_GRACE": "5",
        "VAULT_SKIP_VERIFY": "true",
    }
    assert server_environment(env) == {
        "PATH": "/bin",
        "VAULT_API_ADDR": "https://vault-1:8200",
        "VAULT_LOG_LEVEL": "debug",
    }


def test_binary_falls_back_to_bao(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bao = tmp_path / "bao"
    bao.write_text("#!/bin/sh\n")
    bao.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve_binary("vault") == str(bao)
    with pytest.raises(ServerNotFound, match="'nomad' not found"):
        resolve_binary("nomad")


@pytest.mark.parametrize(
    ("status", "code"),
    [(0, 0), (3 << 8, 3), (signal.SIGKILL, 137), (signal.SIGTERM, 143)],
)
def test_exit_code_from_wait_status(status: int, code: int) -> None:
    assert exit_code_from_status(status) == code


class _Outcome:
    def __init__(self, exc: BaseException) -> None:
        self._exc = exc

    def exception(self) -> BaseException:
        return self._exc


def _state(exc: BaseException, attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(None, lambda: None, (), {})
    state.attempt_number = attempt
    state.outcome = _Outcome(exc)  # type: ignore[assignment]
    return state


def test_unreachable_backoff_starts_fast_and_is_capped() -> None:
    random.seed(1)
    wait = waits.wait_by_error(
        {VaultUnreachable: waits.listener_backoff(2.0)}, waits.rejected_backoff(30)
    )
    delays = [wait(_state(VaultUnreachable("x"), n)) for n in range(1, 30)]
    assert delays[0] <= 0.1
    assert 1.9 <= max(delays) <= 2.0
    # A different error restarts the streak; the rejected backoff is long.
    assert wait(_state(UnsealKeyRejected("no"), 30)) >= 30
    assert wait(_state(VaultUnreachable("x"), 31)) <= 0.1


def test_atomic_write_mode_and_no_temp_left_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    files.atomic_write(target, b"one", files.KEY_MODE)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"one"
    files.atomic_write(target, b"two", files.KEY_MODE)
    assert target.read_bytes() == b"two"
    with pytest.raises(FileNotFoundError):
        files.atomic_write(tmp_path / "missing-dir" / "x", b"x", files.CERT_MODE)
    os.chmod(tmp_path, 0o500)
    try:
        if os.getuid() != 0:
            with pytest.raises(PermissionError):
                files.atomic_write(target, b"three", files.KEY_MODE)
    finally:
        os.chmod(tmp_path, 0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]
    assert target.read_bytes() == b"two"


def test_digest_separates_chunks() -> None:
    assert files.digest([b"a", b"bc"]) != files.digest([b"ab", b"c"])


class _StubConnector:
    """Seal statuses in a row, as Vault would answer them (the logic under test is ours)."""

    def __init__(self, *statuses: SealStatus) -> None:
        self._statuses = list(statuses)
        self.submitted = 0
        self.resets = 0

    def seal_status(self) -> SealStatus:
        return self._statuses[0]

    def reset_unseal(self) -> SealStatus:
        self.resets += 1
        return self._statuses[0]

    def submit_share(self, share: object) -> SealStatus:
        self.submitted += 1
        return self._statuses[min(self.submitted, len(self._statuses) - 1)]


def _status(sealed: bool, progress: int = 0, threshold: int = 1) -> SealStatus:
    return SealStatus(True, sealed, threshold, 1, progress, "2.7.2")


def test_shares_taken_but_still_sealed_is_pending_not_rejected(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
    connector = _StubConnector(_status(True, progress=1, threshold=1), _status(True))
    with pytest.raises(UnsealPending):
        unseal_once(connector, key)  # type: ignore[arg-type]
    assert (connector.resets, connector.submitted) == (1, 1)
    unsealed = _StubConnector(_status(True), _status(False))
    assert unseal_once(unsealed, key).sealed is False  # type: ignore[arg-type]
