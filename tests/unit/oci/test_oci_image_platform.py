"""Platforms: names, normalisation, matching and picking from an index (moorage.oci.platform)."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import pytest

from moorage.errors import InvalidArgument, NotFound
from moorage.oci import (
    Descriptor,
    Platform,
    host_platform,
    matches,
    normalize,
    parse_digest,
    parse_platform,
    platform_from_dict,
    select_manifest,
)

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("Linux/X86_64", Platform("linux", "x86_64")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_parse_platform(text: str, platform: Platform) -> None:
    assert parse_platform(text) == platform


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "linux/arm/v7/x", "linux/a md"])
def test_parse_platform_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument, match="^invalid platform: .*: want os/architecture"):
        parse_platform(text)


def test_str_is_what_parse_reads() -> None:
    for text in ("linux/amd64", "linux/arm/v6"):
        assert str(parse_platform(text)) == text


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        (Platform("linux", "x86_64"), Platform("linux", "amd64")),
        (Platform("linux", "amd64", "v1"), Platform("linux", "amd64")),
        (Platform("linux", "amd64", "v3"), Platform("linux", "amd64", "v3")),
        (Platform("linux", "aarch64"), Platform("linux", "arm64", "v8")),
        (Platform("linux", "arm64"), Platform("linux", "arm64", "v8")),
        (Platform("linux", "arm64", "8"), Platform("linux", "arm64", "v8")),
        (Platform("linux", "arm"), Platform("linux", "arm", "v7")),
        (Platform("linux", "arm", "6"), Platform("linux", "arm", "v6")),
        (Platform("linux", "armhf"), Platform("linux", "arm", "v7")),
        (Platform("linux", "armel"), Platform("linux", "arm", "v6")),
        (Platform("linux", "i686"), Platform("linux", "386")),
        (Platform("Linux", "PPC64LE"), Platform("linux", "ppc64le")),
        (Platform("macos", "arm64"), Platform("darwin", "arm64", "v8")),
    ],
)
def test_normalize(given: Platform, normal: Platform) -> None:
    assert normalize(given) == normal


class _Uname(NamedTuple):
    machine: str


@pytest.mark.parametrize(
    ("machine", "platform"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64/v8"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("i686", "linux/386"),
        ("ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_host_platform(monkeypatch: pytest.MonkeyPatch, machine: str, platform: str) -> None:
    monkeypatch.setattr(os, "uname", lambda: _Uname(machine))

    assert str(host_platform()) == platform


@pytest.mark.parametrize(
    ("want", "have", "expected"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/x86_64", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64", "linux/386", False),
        ("linux/amd64/v3", "linux/amd64/v2", True),
        ("linux/amd64", "linux/amd64/v2", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v5", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/arm/v6", "linux/arm", False),
        ("linux/riscv64", "linux/riscv64", True),
        ("linux/riscv64/rva23", "linux/riscv64", True),
        ("linux/riscv64", "linux/riscv64/rva23", False),
    ],
)
def test_matches(want: str, have: str, expected: bool) -> None:
    assert matches(parse_platform(want), parse_platform(have)) is expected


def _entry(n: int, platform: str | None) -> Descriptor:
    return Descriptor(
        MANIFEST,
        parse_digest(f"sha256:{n:064x}"),
        100 + n,
        platform=None if platform is None else parse_platform(platform),
    )


def _pick(want: str, *platforms: str | None) -> int:
    entries = [_entry(n, p) for n, p in enumerate(platforms)]
    return entries.index(select_manifest(entries, parse_platform(want)))


def test_select_exact() -> None:
    assert _pick("linux/arm64", "linux/amd64", "linux/arm64/v8", "linux/arm/v7") == 1


def test_select_prefers_exact_variant_over_lower() -> None:
    assert _pick("linux/arm/v7", "linux/arm/v6", "linux/arm/v7", "linux/arm/v5") == 1


def test_select_takes_the_nearest_lower_variant() -> None:
    assert _pick("linux/arm/v7", "linux/arm/v5", "linux/arm/v6", "linux/amd64") == 1


def test_select_arm64_without_variant_in_index() -> None:
    assert _pick("linux/arm64/v8", "linux/amd64", "linux/arm64") == 1


def test_select_skips_entries_without_platform() -> None:
    assert _pick("linux/amd64", None, "unknown/unknown", "linux/amd64") == 2


def test_select_takes_the_first_of_equals() -> None:
    assert _pick("linux/amd64", "linux/amd64", "linux/amd64") == 0


def test_select_none_is_not_found() -> None:
    with pytest.raises(NotFound, match="^no manifest for platform linux/amd64 in index$"):
        _pick("linux/amd64", "linux/arm64", "linux/arm/v7")


def test_select_from_empty_index() -> None:
    with pytest.raises(NotFound):
        select_manifest([], Platform("linux", "amd64"))


def test_json_round_trip() -> None:
    data: dict[str, Any] = {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.5830",
        "os.features": ["win32k"],
    }

    platform = platform_from_dict(data)

    assert platform == Platform("windows", "amd64", None, "10.0.17763.5830", ("win32k",))
    assert platform.to_dict() == data


def test_json_errors_name_the_key() -> None:
    with pytest.raises(InvalidArgument, match=r'^platform: \["os.version"\]: must be a string'):
        platform_from_dict({"architecture": "amd64", "os": "windows", "os.version": 10})
