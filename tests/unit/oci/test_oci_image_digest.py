"""Digests: parsing, hashing, streaming (moorage.oci.digest)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.errors import InvalidArgument
from moorage.oci import Digest, Hasher, parse_digest, sha256_of

SHA256_EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_ORACLE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def test_parse_sha256() -> None:
    digest = parse_digest(SHA256_EMPTY)

    assert isinstance(digest, Digest)
    assert (digest.algorithm, digest.hex) == ("sha256", SHA256_EMPTY[7:])


def test_parse_sha512() -> None:
    text = "sha512:" + hashlib.sha512(b"").hexdigest()

    assert parse_digest(text).algorithm == "sha512"


def test_digest_is_its_text() -> None:
    digest = parse_digest(SHA256_EMPTY)

    assert digest == SHA256_EMPTY
    assert {SHA256_EMPTY: 1}[digest] == 1
    assert str(digest) == SHA256_EMPTY


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        SHA256_EMPTY.upper(),
        "SHA256:" + SHA256_EMPTY[7:],
        "sha256:" + SHA256_EMPTY[7:].upper(),
        SHA256_EMPTY[:-1],
        SHA256_EMPTY + "0",
        SHA256_EMPTY[:-1] + "g",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha512:" + SHA256_EMPTY[7:],
        SHA256_EMPTY[7:],
        " " + SHA256_EMPTY,
    ],
)
def test_invalid_digests_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid digest: \".*\"$"):
        parse_digest(text)


def test_constructing_a_digest_validates() -> None:
    with pytest.raises(InvalidArgument, match='^invalid digest: "sha256:12"$'):
        Digest("sha256:12")


def test_sha256_of_empty() -> None:
    assert sha256_of(b"") == SHA256_EMPTY


def test_hasher_streams_chunks() -> None:
    hasher = Hasher()
    for chunk in (b"hello ", bytearray(b"wor"), memoryview(b"ld")):
        hasher.update(chunk)

    assert hasher.digest() == sha256_of(b"hello world")
    assert hasher.size == 11


def test_hasher_sha512() -> None:
    hasher = Hasher("sha512")
    hasher.update(b"abc")

    assert hasher.digest() == "sha512:" + hashlib.sha512(b"abc").hexdigest()


def test_hasher_refuses_unknown_algorithm() -> None:
    with pytest.raises(InvalidArgument, match='^unsupported digest algorithm: "md5"$'):
        Hasher("md5")


@given(st.binary(max_size=512))
def test_sha256_of_parses_back(data: bytes) -> None:
    digest = sha256_of(data)

    assert parse_digest(str(digest)) == digest
    assert digest.hex == hashlib.sha256(data).hexdigest()


@given(st.from_regex(r"\A(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})\Z"))
def test_every_well_formed_digest_parses(text: str) -> None:
    digest = parse_digest(text)

    assert f"{digest.algorithm}:{digest.hex}" == text


@given(
    st.one_of(
        st.text(max_size=140),
        st.builds(
            lambda s: "sha256:" + s, st.text(alphabet="0123456789abcdefABCDEFg", max_size=70)
        ),
    )
)
def test_parse_digest_agrees_with_the_grammar(text: str) -> None:
    if _ORACLE.fullmatch(text):
        assert parse_digest(text) == text
    else:
        with pytest.raises(InvalidArgument):
            parse_digest(text)
