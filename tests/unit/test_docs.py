"""The docs rules: the roadmap is design intent only; setup links to it by explicit paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts import check_docs

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = {"bootstrap.md", "deploy.md", "verify.md", "rotate.md", "troubleshoot.md"}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A copy of the real docs to plant violations in."""
    copy = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", copy)
    assert check_docs.check(copy) == []
    return copy


def _roadmap_file(docs: Path) -> Path:
    return sorted((docs / "roadmap").glob("*.md"))[0]


def _setup_file(docs: Path) -> Path:
    return docs / "setup" / "verify.md"


def _plant(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text + "\n")


def _rules(docs: Path) -> set[str]:
    return {v.rule for v in check_docs.check(docs)}


def test_the_real_docs_follow_both_rules() -> None:
    violations = check_docs.check(ROOT / "docs")
    assert violations == [], "\n".join(map(str, violations))


def test_every_runbook_exists_and_links_to_the_roadmap() -> None:
    setup = ROOT / "docs" / "setup"
    assert {p.name for p in setup.glob("*.md")} >= RUNBOOKS
    for name in RUNBOOKS:
        targets = [t for _, t in check_docs.links((setup / name).read_text())]
        assert any(t.startswith("../roadmap/") for t in targets), name


def test_the_roadmap_keeps_the_flow_the_unseal_model_and_the_history() -> None:
    text = "\n".join(p.read_text() for p in (ROOT / "docs" / "roadmap").glob("*.md"))
    for heading in ("## Current flow", "## Vault unseal model", "## Historical / superseded"):
        assert heading in text


@pytest.mark.parametrize(
    "planted",
    [
        "See [the bootstrap runbook](../setup/bootstrap.md).",
        "[boot]: ../setup/bootstrap.md",
        "Operators follow docs/setup for this.",
        "The steps are in rotate.md.",
    ],
)
def test_a_roadmap_reference_to_a_runbook_fails(docs: Path, planted: str) -> None:
    _plant(_roadmap_file(docs), planted)
    assert _rules(docs) & {"roadmap-links-setup", "roadmap-names-setup"}


@pytest.mark.parametrize(
    "planted",
    [
        "```sh\ndocker service ps iklimco_vault\n```",
        "```\ndocker service logs iklimco_cert-reloader --tail 20\n```",
        "Check it with `docker service ps iklimco_cert-reloader`.",
        "The secret is created by `init/vault/vault-bootstrap.sh`.",
        "$ vault-entrypoint verify",
    ],
)
def test_a_command_in_the_roadmap_fails(docs: Path, planted: str) -> None:
    _plant(_roadmap_file(docs), planted)
    assert _rules(docs) == {"roadmap-has-command"}


@pytest.mark.parametrize(
    ("planted", "rule"),
    [
        ("Design: [flow](roadmap/07-unseal-key-lifecycle.md).", "setup-link-not-explicit"),
        ("Design: [flow](/docs/roadmap/07-unseal-key-lifecycle.md).", "setup-link-not-explicit"),
        ("Design: [flow](docs/roadmap/07-unseal-key-lifecycle.md).", "setup-link-not-explicit"),
        ("Design: [flow](../roadmap/).", "setup-link-not-explicit"),
        ("Design: see docs/roadmap/07-unseal-key-lifecycle.md.", "setup-link-not-explicit"),
        ("Design: [flow](../roadmap/99-does-not-exist.md).", "setup-link-missing-file"),
    ],
)
def test_a_setup_link_that_is_not_an_explicit_existing_path_fails(
    docs: Path, planted: str, rule: str
) -> None:
    _plant(_setup_file(docs), planted)
    assert _rules(docs) == {rule}


def test_removing_a_linked_roadmap_file_fails(docs: Path) -> None:
    (docs / "roadmap" / "07-unseal-key-lifecycle.md").unlink()
    rules = _rules(docs)
    assert "setup-link-missing-file" in rules


def test_the_checker_script_exits_non_zero_on_a_violation(docs: Path) -> None:
    import subprocess
    import sys

    script = ROOT / "scripts" / "check_docs.py"
    ok = subprocess.run([sys.executable, str(script), str(docs)], capture_output=True, check=False)
    assert ok.returncode == 0, ok.stdout
    _plant(_roadmap_file(docs), "See [it](../setup/deploy.md).")
    bad = subprocess.run(
        [sys.executable, str(script), str(docs)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    assert "roadmap-links-setup" in bad.stdout
