from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pytest

from entrypoint import logs
from entrypoint.errors import UnsealKeyUnavailable
from entrypoint.keys import Secret, parse_key_material, read_key_file

KEY = base64.b64encode(bytes(range(1, 33))).decode()
HEX = bytes(range(1, 33)).hex()
KEY2 = base64.b64encode(bytes(range(40, 73))).decode()


def revealed(text: str) -> list[str]:
    return [s.reveal() for s in parse_key_material(text)]


def test_single_key_base64_or_hex() -> None:
    assert revealed(KEY + "\n") == [KEY]
    assert revealed(f"  {HEX}  ") == [HEX]


def test_several_shares_one_per_line_with_comments() -> None:
    text = f"# shares 1-3\n{KEY}\n\n{HEX}\n  {KEY[:-4]}AAAA\n"
    assert revealed(text) == [KEY, HEX, KEY[:-4] + "AAAA"]


@pytest.mark.parametrize("field", ["unseal_keys_b64", "keys_base64"])
def test_operator_init_json(field: str) -> None:
    doc = {field: [KEY, KEY2], "root_token": "s.roottoken123456"}
    assert revealed(json.dumps(doc)) == [KEY, KEY2]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "secret file is empty"),
        ("  \n\t\n", "secret file is empty"),
        ("# only a comment\n", "holds no key"),
        ("{not json", "looks like JSON but does not parse"),
        ('{"root_token": "x"}', "has no key list"),
        ("[1, 2]", "key line 1 is neither base64 nor hex"),
        (f"{KEY}\nnot a key at all!\n", "key line 2 is neither base64 nor hex"),
    ],
)
def test_bad_material_is_a_clear_error_without_the_text(text: str, reason: str) -> None:
    with pytest.raises(UnsealKeyUnavailable, match=reason) as info:
        parse_key_material(text)
    assert KEY not in str(info.value) and "not a key at all" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_read_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UnsealKeyUnavailable, match="does not exist"):
        read_key_file(tmp_path / "absent")
    with pytest.raises(UnsealKeyUnavailable, match="is a directory"):
        read_key_file(tmp_path)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UnsealKeyUnavailable, match="not UTF-8"):
        read_key_file(binary)


def test_secret_never_shows_itself() -> None:
    secret = Secret(KEY)
    assert repr(secret) == str(secret) == "<SECRET>"
    assert KEY not in f"{secret} {secret!r} {[secret]} {(secret,)}"
    assert secret == Secret(KEY) and secret != Secret(HEX)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_registered_secrets_are_masked_in_every_encoding() -> None:
    Secret(KEY)
    raw = base64.b64decode(KEY)
    text = f"a {KEY} b {raw.hex()} c {raw.hex().upper()} d {KEY.rstrip('=')}"
    masked = logs.redact(text)
    assert KEY.rstrip("=") not in masked and raw.hex() not in masked.lower()
    assert masked.count("<SECRET>") == 4
