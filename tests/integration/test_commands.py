"""`health`, `unseal` and `certs check` against a real OpenBao server and real files."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint import devpki
from entrypoint.devserver import LocalNode
from tests.integration.conftest import Launcher, Pki, Servers, Template, with_data, write_key_file


def test_health_exit_code_in_each_state(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    servers: Servers,
    pki: Pki,
    tmp_path: Path,
) -> None:
    code, out = launcher.cli(node, key_path, "health")
    assert code == 12, out
    assert "connection refused" in out

    fresh = servers.start(node)
    code, out = launcher.cli(node, key_path, "health")
    assert code == 11, out
    fresh.terminate()
    fresh.wait(timeout=30)

    template = templates(1, 1)
    with_data(node, template)
    servers.start(node)
    code, out = launcher.cli(node, key_path, "health")
    assert (code, "sealed (progress 0/1)" in out) == (10, True), out

    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(pki.other_ca.cert_pem)
    code, out = launcher.cli(node, key_path, "health", VAULT_CACERT=str(other_ca))
    assert code == 13, out

    write_key_file(key_path, template.keys[0])
    code, out = launcher.cli(node, key_path, "unseal")
    assert code == 0, out
    code, out = launcher.cli(node, key_path, "health")
    assert code == 0 and out.startswith("unsealed version="), out


def test_unseal_command_with_a_wrong_key_exits_non_zero(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    servers: Servers,
) -> None:
    with_data(node, templates(5, 3))
    servers.start(node)
    write_key_file(key_path, "")
    code, out = launcher.cli(node, key_path, "unseal")
    assert code == 20 and "secret file is empty" in out, out
    assert node.seal_status()["sealed"] is True


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("ok", 0, ""),
        ("expiring", 30, "certificate expires in"),
        ("mismatched", 65, "does not match the leaf certificate"),
        ("missing", 66, "does not exist"),
    ],
)
def test_certs_check_report_and_exit_codes(
    node: LocalNode,
    launcher: Launcher,
    key_path: Path,
    pki: Pki,
    case: str,
    code: int,
    message: str,
) -> None:
    certs = node.certs_dir
    if case == "expiring":
        leaf = devpki.make_leaf(pki.ca, days=5)
        devpki.write_pair(certs, node.cert_name, node.key_name, leaf, pki.ca)
    elif case == "mismatched":
        (certs / node.key_name).write_bytes(devpki.make_leaf(pki.ca).key_pem)
    elif case == "missing":
        (certs / node.key_name).unlink()
    got, out = launcher.cli(node, key_path, "certs", "check", "--json")
    assert got == code, out
    assert message in out
    if case == "ok":
        report = json.loads(out)
        assert report["sans"] == "*.iklim.co,iklim.co"
        assert report["chain"] == 2 and len(report["sha256"]) == 64
        not_after = dt.datetime.fromisoformat(report["not_after"])
        assert not_after == pki.leaf.cert.not_valid_after_utc
