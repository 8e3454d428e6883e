"""The README's quickstart and configuration table stay true to the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from scripts import config_table

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_table_matches_the_cli() -> None:
    missing, stale = config_table.differences((ROOT / "README.md").read_text())
    assert not missing and not stale, (
        f"README table out of date (python scripts/config_table.py --write):\n"
        f"missing: {sorted(missing)}\nstale: {sorted(stale)}"
    )


def test_a_planted_table_violation_is_caught() -> None:
    readme = (ROOT / "README.md").read_text()
    planted = readme.replace("`VAULT_UNSEAL_KEY_FILE`", "`VAULT_UNSEAL_KEYFILE`", 1)
    base_missing, base_stale = config_table.differences(readme)
    missing, stale = config_table.differences(planted)
    new_missing, new_stale = missing - base_missing, stale - base_stale
    assert len(new_missing) == 1 and "`VAULT_UNSEAL_KEY_FILE`" in new_missing.pop()
    assert len(new_stale) == 1 and "`VAULT_UNSEAL_KEYFILE`" in new_stale.pop()


def test_every_env_var_in_the_table_is_real() -> None:
    table = config_table.table()
    assert {
        "VAULT_BINARY",
        "VAULT_CONFIG_DIR",
        "VAULT_CERTS_DIR",
        "VAULT_TLS_CERT_NAME",
        "VAULT_TLS_KEY_NAME",
        "VAULT_UNSEAL_KEY_FILE",
        "VAULT_ADDR",
        "VAULT_CACERT",
        "VAULT_TLS_SERVER_NAME",
        "VAULT_SKIP_VERIFY",
    } <= set(re.findall(r"`(VAULT_[A-Z_]+)`", table))


def test_quickstart_is_two_commands_and_ci_runs_the_test_one() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
