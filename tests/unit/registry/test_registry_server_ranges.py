"""Byte ranges of blob reads and of upload chunks."""

from __future__ import annotations

import pytest

from moorage.registry.server.errors import BlobUploadInvalid, RangeNotSatisfiable
from moorage.registry.server.ranges import (
    ByteRange,
    parse_content_range,
    parse_range,
    upload_range,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-4", ByteRange(0, 4)),
        ("bytes=2-", ByteRange(2, 9)),
        ("bytes=-3", ByteRange(7, 9)),
        ("bytes=-30", ByteRange(0, 9)),
        ("bytes=5-100", ByteRange(5, 9)),
        (" bytes = 1 - 2 ", ByteRange(1, 2)),
        # Not served as a range: the whole blob instead (RFC 9110 allows ignoring).
        ("bytes=0-1,3-4", None),
        ("items=0-1", None),
        ("bytes=4-2", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_a_range_past_the_end_is_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as raised:
        parse_range(header, size)
    assert raised.value.headers == {"Content-Range": f"bytes */{size}"}


def test_byte_range_length_is_inclusive() -> None:
    assert ByteRange(0, 0).length == 1
    assert ByteRange(10, 19).length == 10


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0-99", ByteRange(0, 99)),
        ("100-100", ByteRange(100, 100)),
        ("bytes 0-99/200", ByteRange(0, 99)),
        ("bytes 0-99/*", ByteRange(0, 99)),
        ("bytes=5-9", ByteRange(5, 9)),
        (" 1-2 ", ByteRange(1, 2)),
    ],
)
def test_parse_content_range(header: str, expected: ByteRange) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize("header", ["", "0-", "-5", "a-b", "5-4", "0-1-2", "bytes */200"])
def test_malformed_content_range_is_blob_upload_invalid(header: str) -> None:
    with pytest.raises(BlobUploadInvalid):
        parse_content_range(header)


@pytest.mark.parametrize(("offset", "header"), [(0, "0-0"), (1, "0-0"), (10, "0-9")])
def test_upload_range_names_the_last_byte(offset: int, header: str) -> None:
    assert upload_range(offset) == header
