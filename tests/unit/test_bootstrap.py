"""bootstrap's pure parts: payloads, names, files that are never overwritten, the secret swap."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from entrypoint import bootstrap, keystore
from entrypoint.errors import ConfigError
from entrypoint.keys import Secret

SHARES = tuple(
    Secret(s)
    for s in ("c2hhcmUtb25lLXNlY3JldA==", "c2hhcmUtdHdvLXNlY3JldA==", "c2hhcmUtdGhyZWUtc2VjcmV0")
)


def test_the_secret_holds_the_thresholds_shares_and_the_backup_all() -> None:
    assert bootstrap.secret_payload(SHARES, 2).decode().splitlines() == [
        s.reveal() for s in SHARES[:2]
    ]
    backup = bootstrap.backup_payload(SHARES, 2, "vault_unseal_key-20250101000000").decode()
    lines = backup.splitlines()
    assert lines[0].startswith("# ") and "2 of 3" in lines[0]
    assert lines[1:] == [s.reveal() for s in SHARES]
    # The backup is itself a valid key file for `run`, `unseal` and `--rotate`.
    from entrypoint.keys import parse_key_material

    assert parse_key_material(backup) == SHARES


def test_write_new_file_is_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    bootstrap.write_new_file(path, b"first\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        bootstrap.write_new_file(path, b"second\n")
    assert path.read_bytes() == b"first\n"


def test_the_token_file_is_reserved_before_init_and_removed_if_never_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "root-token"
    with bootstrap.reserved_token_file(path):
        assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()
    with bootstrap.reserved_token_file(path) as write:
        write(Secret("s.0123456789abcdef"))
    assert path.read_text() == "s.0123456789abcdef\n"
    with pytest.raises(ConfigError, match="already exists"), bootstrap.reserved_token_file(path):
        pass
    assert path.read_text() == "s.0123456789abcdef\n"
    missing = tmp_path / "missing" / "token"
    with (
        pytest.raises(ConfigError, match="cannot be created"),
        bootstrap.reserved_token_file(missing),
    ):
        pass


@pytest.mark.parametrize("prefix", ["vault_unseal_key", "a", "x.y-z_1"])
def test_valid_prefixes(prefix: str) -> None:
    bootstrap.check_prefix(prefix)


@pytest.mark.parametrize("prefix", ["", "-a", "a b", "a/b", "x" * 50, "ends-"])
def test_invalid_prefixes_fail_before_anything_happens(prefix: str) -> None:
    with pytest.raises(ConfigError):
        bootstrap.check_prefix(prefix)


def test_an_unwritable_backup_dir_is_a_config_error(tmp_path: Path) -> None:
    bootstrap.check_dir_writable(tmp_path)
    with pytest.raises(ConfigError, match="not writable"):
        bootstrap.check_dir_writable(tmp_path / "missing")


class _Secrets:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def list(self, filters: dict[str, str]) -> list[Any]:
        class S:
            def __init__(self, name: str) -> None:
                self.id = f"id-{name}"
                self.attrs = {
                    "Spec": {
                        "Name": name,
                        "Labels": {keystore.VERSION_LABEL: name.rsplit("-", 1)[-1]},
                    }
                }

        return [S(n) for n in self.names]


class _Client:
    def __init__(self, names: list[str]) -> None:
        self.secrets = _Secrets(names)


def test_versions_sort_oldest_first_and_ignore_other_prefixes() -> None:
    client = _Client(["p-20250102000000", "other-20240101000000", "p-20250101000000"])
    assert [v.name for v in keystore.secret_versions(client, "p")] == [
        "p-20250101000000",
        "p-20250102000000",
    ]


def test_next_name_skips_taken_names_and_backups(tmp_path: Path) -> None:
    name, version = keystore.next_secret_name(_Client([]), "p", tmp_path)
    assert name == f"p-{version}" and len(version) == 14 and version.isdigit()
    (tmp_path / f"{name}.keys").write_text("")
    taken = _Client([name])
    second, _ = keystore.next_secret_name(taken, "p", tmp_path)
    assert second != name and second > name


def test_mounted_secret_finds_the_vault_unseal_key_target() -> None:
    service = {
        "Spec": {
            "TaskTemplate": {
                "ContainerSpec": {
                    "Secrets": [
                        {"SecretID": "a", "SecretName": "other", "File": {"Name": "other"}},
                        {
                            "SecretID": "b",
                            "SecretName": "vault_unseal_key-1",
                            "File": {"Name": "vault_unseal_key", "Mode": 0o400},
                        },
                    ]
                }
            }
        }
    }
    assert keystore.mounted_secret(service)["SecretID"] == "b"  # type: ignore[index]
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"].pop()
    assert keystore.mounted_secret(service) is None


def test_outcome_and_config_never_show_a_secret(tmp_path: Path) -> None:
    token = Secret("s.this-is-the-root-token")
    out = bootstrap.Outcome(root_token=token)
    assert "this-is-the-root-token" not in repr(out)
    cfg = bootstrap.BootstrapConfig(target=None, backup_dir=tmp_path)
    assert "token" not in repr(cfg).replace("token_file", "").replace("root_token", "")


class _Node:
    """A connector double for unseal_initialized: sealed until ``needed`` shares arrive."""

    def __init__(self, needed: int, fail: bool = False) -> None:
        self.needed, self.fail, self.got = needed, fail, 0

    def seal_status(self) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(sealed=self.got < self.needed, progress=0, threshold=self.needed)

    def submit_share(self, share: Secret) -> Any:
        if self.fail:
            from entrypoint.errors import VaultUnreachable

            raise VaultUnreachable("unseal: connection refused")
        self.got += 1
        return self.seal_status()


def _lines(caplog: pytest.LogCaptureFixture) -> str:
    """The captured records as the entrypoint prints them (key=value)."""
    from entrypoint.logs import KeyValueFormatter

    formatter = KeyValueFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def test_the_initialized_node_gets_the_thresholds_shares_and_no_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = _Node(needed=2)
    with caplog.at_level("INFO"):
        bootstrap.unseal_initialized(node, SHARES)  # type: ignore[arg-type]
    assert node.got == 2
    assert "event=unsealed_after_init shares=2" in _lines(caplog)


def test_unsealing_after_init_is_best_effort_and_says_so_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("INFO"):
        bootstrap.unseal_initialized(_Node(needed=1, fail=True), SHARES)  # type: ignore[arg-type]
        bootstrap.unseal_initialized(_Node(needed=9), SHARES[:1])  # type: ignore[arg-type]
    text = _lines(caplog)
    assert text.count("event=unseal_after_init_failed") == 2
    assert "connection refused" in text and "still sealed" in text
    assert not [s for s in SHARES if s.reveal() in text]
