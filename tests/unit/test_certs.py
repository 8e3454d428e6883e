from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from entrypoint import devpki
from entrypoint.certs import CertPair, inspect_pair, validate_pair
from entrypoint.errors import (
    CertificateMismatch,
    CertificateMissing,
    CertificateNotCurrentlyValid,
    CertificateParseError,
    ChainOrderError,
)

CA = devpki.make_ca("unit CA")
INTERMEDIATE_KEY = devpki.make_ca("unit intermediate")
LEAF = devpki.make_leaf(CA, ("*.iklim.co", "iklim.co", "127.0.0.1"))


def test_valid_pair_report() -> None:
    info = validate_pair(devpki.full_chain(LEAF, CA), LEAF.key_pem)
    assert info.sans == ("*.iklim.co", "iklim.co", "127.0.0.1")
    assert info.server_name() == "vault.iklim.co"
    assert info.chain_length == 2
    assert info.not_after == LEAF.cert.not_valid_after_utc
    assert len(info.fingerprint) == 64
    assert set(info.log_fields()) == {"subject", "sans", "not_after", "sha256", "chain"}


def test_mismatched_key() -> None:
    other = devpki.make_leaf(CA)
    with pytest.raises(CertificateMismatch, match="does not match the leaf"):
        validate_pair(devpki.full_chain(LEAF, CA), other.key_pem)


def test_leaf_must_come_first() -> None:
    with pytest.raises(ChainOrderError, match="leaf must come first"):
        validate_pair(CA.cert_pem + LEAF.cert_pem, LEAF.key_pem)


def test_chain_must_be_issuer_ordered() -> None:
    unrelated = devpki.make_ca("unrelated")
    with pytest.raises(ChainOrderError, match="is not issued by certificate #2"):
        validate_pair(devpki.full_chain(LEAF, unrelated), LEAF.key_pem)


@pytest.mark.parametrize("offset_days", [-100, 100])
def test_not_currently_valid(offset_days: int) -> None:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=offset_days)
    leaf = devpki.make_leaf(CA, days=30, valid_from=start)
    message = "expired at" if offset_days < 0 else "not valid before"
    with pytest.raises(CertificateNotCurrentlyValid, match=message):
        validate_pair(devpki.full_chain(leaf, CA), leaf.key_pem)


def test_garbage_and_encrypted_key_never_echo_the_key() -> None:
    with pytest.raises(CertificateParseError, match="does not hold a PEM certificate"):
        validate_pair(b"garbage", LEAF.key_pem)
    with pytest.raises(CertificateParseError, match="does not hold a PEM private key") as info:
        validate_pair(
            LEAF.cert_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
    assert info.value.__cause__ is None
    encrypted = LEAF.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass-phrase"),
    )
    with pytest.raises(CertificateParseError, match="is encrypted"):
        validate_pair(LEAF.cert_pem, encrypted)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CertificateMissing, match="does not exist"):
        inspect_pair(CertPair(tmp_path / "c.pem", tmp_path / "k.pem"))
