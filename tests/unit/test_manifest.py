"""The published-state manifest: round trip, matching, garbage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from entrypoint import devpki
from entrypoint.certs import validate_pair
from entrypoint.errors import SourceNotReady
from entrypoint.manifest import MANIFEST_NAME, Manifest, manifest_item, read_manifest

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    ca = devpki.make_ca()
    leaf = devpki.make_leaf(ca)
    return devpki.full_chain(leaf, ca), leaf.key_pem


def describe(pair: tuple[bytes, bytes]) -> Manifest:
    cert_pem, key_pem = pair
    info = validate_pair(cert_pem, key_pem)
    return Manifest.describe("c.crt", "k.pem", cert_pem, key_pem, info, NOW)


def test_round_trip_and_match(pair: tuple[bytes, bytes]) -> None:
    manifest = describe(pair)
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
    assert again.matches(*pair)
    assert not again.matches(pair[0] + b"\n", pair[1])
    assert not again.matches(pair[0], b"other key")
    assert again.same_content(manifest)
    assert not again.same_content(None)


def test_manifest_holds_no_key_material(pair: tuple[bytes, bytes]) -> None:
    text = describe(pair).to_json().decode()
    key_body = pair[1].decode().splitlines()[1]
    assert key_body not in text
    assert "PRIVATE" not in text


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": 99}',
        b'{"format": 1, "cert_name": "c"}',
        b'{"format": 1, "cert_name": "c", "key_name": "k", "cert_sha256": "a", "key_sha256": "b",'
        b' "fingerprint": "f", "not_after": "2025-01-01T00:00:00", "published_at": "x"}',
    ],
)
def test_garbage_is_not_a_manifest(data: bytes) -> None:
    with pytest.raises(SourceNotReady, match="not a readable manifest"):
        Manifest.from_json(data)


def test_read_manifest(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    assert read_manifest(tmp_path) is None
    path, data, mode = manifest_item(tmp_path, describe(pair))
    assert path == tmp_path / MANIFEST_NAME
    assert mode == 0o644
    path.write_bytes(data)
    assert read_manifest(tmp_path) == describe(pair)
    path.write_bytes(b"{")
    with pytest.raises(SourceNotReady):
        read_manifest(tmp_path)
