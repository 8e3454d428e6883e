"""cert-distributor logic: complete generations, the atomic-writer layout, the restart-once rule."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from entrypoint import devpki
from entrypoint.distributor import (
    DATA_LINK,
    FINGERPRINT_LABEL,
    GENERATION_PREFIX,
    Distributor,
    DistributorConfig,
    NodeDir,
    ReloadMode,
    force_update_once,
    parse_owner,
    probe_target,
    read_generation,
)
from entrypoint.errors import (
    ConfigError,
    DockerUnavailable,
    ServiceUpdateConflict,
    SourceNotReady,
)
from entrypoint.manifest import MANIFEST_NAME
from tests.helpers import need
from tests.helpers.distributor import Shared

CERT, KEY = "STAR.iklim.co.full.crt", "STAR.iklim.co_key.pem"


@pytest.fixture(scope="module")
def ca() -> devpki.Issued:
    return devpki.make_ca()


@pytest.fixture
def published(tmp_path: Path, ca: devpki.Issued) -> Shared:
    """A source dir filled the way the reloader fills it."""
    return Shared(tmp_path, ca)


def test_complete_generation(published: Shared) -> None:
    leaf = published.publish()
    generation = read_generation(published.dir, CERT, KEY)
    assert generation.key_pem == leaf.key_pem
    assert generation.info.fingerprint == generation.manifest.fingerprint


def test_half_written_generation_is_refused(published: Shared) -> None:
    published.publish()
    newer = devpki.make_leaf(published.ca)
    (published.dir / CERT).write_bytes(devpki.full_chain(newer, published.ca))
    with pytest.raises(SourceNotReady, match="half-written"):
        read_generation(published.dir, CERT, KEY)
    (published.dir / KEY).write_bytes(newer.key_pem)
    with pytest.raises(SourceNotReady, match="half-written"):
        read_generation(published.dir, CERT, KEY)


def test_source_without_manifest_or_mount(published: Shared, tmp_path: Path) -> None:
    with pytest.raises(SourceNotReady, match="nothing published yet"):
        read_generation(published.dir, CERT, KEY)
    with pytest.raises(SourceNotReady, match="not a directory"):
        read_generation(tmp_path / "unmounted", CERT, KEY)
    published.publish()
    with pytest.raises(SourceNotReady, match="describes"):
        read_generation(published.dir, "other.crt", KEY)


def test_install_layout(published: Shared, tmp_path: Path) -> None:
    node = NodeDir(tmp_path / "node", CERT, KEY)
    leaf = published.publish()
    name = node.install(read_generation(published.dir, CERT, KEY))
    root = node.root
    assert os.readlink(root / DATA_LINK) == name
    assert name.startswith(GENERATION_PREFIX)
    for file_name in (CERT, KEY, MANIFEST_NAME):
        assert os.readlink(root / file_name) == f"{DATA_LINK}/{file_name}"
    assert (root / KEY).read_bytes() == leaf.key_pem
    assert stat.S_IMODE((root / KEY).stat().st_mode) == 0o600
    assert stat.S_IMODE((root / CERT).stat().st_mode) == 0o644
    assert node.current() is not None
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_install_hands_the_key_to_vaults_user(published: Shared, tmp_path: Path) -> None:
    need(os.getuid() == 0, "chown to another user needs root")
    node = NodeDir(tmp_path / "node", CERT, KEY, key_owner=parse_owner("4321:1234"))
    published.publish()
    node.install(read_generation(published.dir, CERT, KEY))
    key = (node.root / KEY).stat()
    assert (key.st_uid, key.st_gid, stat.S_IMODE(key.st_mode)) == (4321, 1234, 0o600)
    assert parse_owner("100") == (100, 100) and parse_owner(None) is None
    with pytest.raises(ConfigError, match="not UID or UID:GID"):
        parse_owner("vault")


def test_install_replaces_legacy_files_and_prunes(published: Shared, tmp_path: Path) -> None:
    root = tmp_path / "node"
    root.mkdir()
    (root / CERT).write_bytes(b"old cert")
    (root / KEY).write_bytes(b"old key")
    node = NodeDir(root, CERT, KEY, keep=2)
    names = []
    for days in (90, 91, 92, 93):
        leaf = published.publish(days)
        names.append(node.install(read_generation(published.dir, CERT, KEY)))
        assert (root / KEY).read_bytes() == leaf.key_pem
    generations = sorted(p.name for p in root.iterdir() if p.name.startswith(GENERATION_PREFIX))
    assert generations == names[-2:]
    assert (root / CERT).is_symlink()


def test_nothing_new_installs_nothing(published: Shared, tmp_path: Path) -> None:
    published.publish()
    cfg = DistributorConfig(
        source_dir=published.dir,
        dest_dir=tmp_path / "node",
        vault_reload=ReloadMode.NONE,
        vault_addr=None,
    )
    distributor = Distributor(cfg, lambda s: None, lambda: False)
    assert distributor.sync() is not None
    assert distributor.sync() is None
    assert distributor.reload() is True
    assert distributor.reload() is False
    assert distributor.node.reloaded() == distributor.node.current().fingerprint  # type: ignore[union-attr]


def test_docker_unreachable_installs_nothing(
    published: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    published.publish()
    cfg = DistributorConfig(
        source_dir=published.dir,
        dest_dir=tmp_path / "node",
        vault_reload=ReloadMode.SIGHUP,
        docker_timeout=2,
    )
    distributor = Distributor(cfg, lambda s: None, lambda: False)
    errors = distributor.run_pass()
    assert [type(e) for e in errors] == [DockerUnavailable]
    assert not (tmp_path / "node").exists()


@pytest.mark.parametrize(
    ("addr", "target"),
    [
        ("https://127.0.0.1:8200", ("127.0.0.1", 8200)),
        ("https://vault.iklim.co", ("vault.iklim.co", 8200)),
        ("127.0.0.1:9443", ("127.0.0.1", 9443)),
        ("https://[::1]:8201", ("::1", 8201)),
    ],
)
def test_probe_target(addr: str, target: tuple[str, int]) -> None:
    assert probe_target(addr) == target


class FakeAPI:
    """The two low-level calls force_update_once makes, with Swarm's version check."""

    def __init__(self, conflicts: int = 0, racer_label: str | None = None) -> None:
        self.spec: dict[str, Any] = {
            "Labels": {"keep": "me"},
            "TaskTemplate": {"ContainerSpec": {"Image": "vault"}},
        }
        self.version = 10
        self.updates: list[dict[str, Any]] = []
        self.conflicts = conflicts
        self.racer_label = racer_label

    def inspect_service(self, name: str) -> dict[str, Any]:
        return {"ID": "svc", "Version": {"Index": self.version}, "Spec": self.spec}

    def update_service(self, sid: str, version: int, **kw: Any) -> None:
        import docker.errors

        if self.conflicts:
            self.conflicts -= 1
            if self.racer_label:  # another distributor won the race
                self.spec = {
                    "Labels": {FINGERPRINT_LABEL: self.racer_label},
                    "TaskTemplate": {"ForceUpdate": 1},
                }
                self.version += 1
            raise docker.errors.APIError("rpc error: update out of sequence")
        assert version == self.version
        assert kw["fetch_current_spec"] is False  # the spec as inspected, no defaults added
        self.updates.append(kw)
        self.spec = {"Labels": kw["labels"], "TaskTemplate": kw["task_template"]}
        self.version += 1


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api


def test_force_update_once_records_the_fingerprint() -> None:
    api = FakeAPI()
    assert force_update_once(FakeClient(api), "svc", "aa", lambda s: None, lambda: False) == 1
    assert api.updates[0]["labels"] == {"keep": "me", FINGERPRINT_LABEL: "aa"}
    assert api.updates[0]["task_template"] == {
        "ContainerSpec": {"Image": "vault"},
        "ForceUpdate": 1,
    }
    assert force_update_once(FakeClient(api), "svc", "aa", lambda s: None, lambda: False) is None
    assert force_update_once(FakeClient(api), "svc", "bb", lambda s: None, lambda: False) == 2
    assert len(api.updates) == 2


def test_force_update_retries_out_of_sequence() -> None:
    api = FakeAPI(conflicts=2)
    assert force_update_once(FakeClient(api), "svc", "aa", lambda s: None, lambda: False) == 1
    assert len(api.updates) == 1


def test_force_update_loser_of_a_race_does_nothing() -> None:
    api = FakeAPI(conflicts=1, racer_label="aa")
    assert force_update_once(FakeClient(api), "svc", "aa", lambda s: None, lambda: False) is None
    assert api.updates == []


def test_force_update_gives_up_after_attempts() -> None:
    api = FakeAPI(conflicts=100)
    with pytest.raises(ServiceUpdateConflict):
        force_update_once(FakeClient(api), "svc", "aa", lambda s: None, lambda: False, attempts=3)
    assert api.conflicts == 97
