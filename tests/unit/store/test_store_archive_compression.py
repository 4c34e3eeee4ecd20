"""Layer compression: detection, streaming decompression, reproducible output, digests."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct

import pytest
import zstandard

from moorage.errors import FailedPrecondition, InvalidArgument
from moorage.store.archive import (
    LayerStream,
    compressor,
    detect_compression,
    open_decompressed,
)

PLAIN = b"".join(b"line %d of a layer that compresses\n" % i for i in range(20000)) + os.urandom(
    4096
)


def _compress(data: bytes, algo: str | None, level: int | None = None) -> bytes:
    out = io.BytesIO()
    with compressor(out, algo, level) as z:  # type: ignore[arg-type]
        z.write(data)
    return out.getvalue()


class _Trickle(io.RawIOBase):
    """A pipe-like reader: at most a few bytes per read."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._step, len(self._data))
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x50\x2a\x4d\x18", "zstd"),  # a skippable frame first
        (b"\x5f\x2a\x4d\x18", "zstd"),
        (b"etc/", None),
        (b"", None),
        (b"\x1f", None),
    ],
)
def test_detect_compression_by_magic(head: bytes, expected: str | None) -> None:
    assert detect_compression(head) == expected


@pytest.mark.parametrize("algo", ["gzip", "zstd", None])
def test_open_decompressed_round_trips(algo: str | None) -> None:
    blob = _compress(PLAIN, algo)

    with open_decompressed(io.BytesIO(blob)) as reader:
        assert reader.read() == PLAIN


@pytest.mark.parametrize("algo", ["gzip", "zstd", None])
def test_open_decompressed_reads_a_trickling_source(algo: str | None) -> None:
    blob = _compress(PLAIN, algo)

    reader = open_decompressed(io.BufferedReader(_Trickle(blob), 7))

    assert reader.read() == PLAIN


def test_open_decompressed_reads_concatenated_gzip_members() -> None:
    blob = _compress(b"first ", "gzip") + _compress(b"second", "gzip")

    assert open_decompressed(io.BytesIO(blob)).read() == b"first second"


def test_open_decompressed_reads_zstd_frames_and_skippable_frames() -> None:
    skippable = struct.pack("<II", 0x184D2A50, 5) + b"notes"
    blob = skippable + _compress(b"first ", "zstd") + _compress(b"second", "zstd")

    assert open_decompressed(io.BytesIO(blob)).read() == b"first second"


@pytest.mark.parametrize("algo", ["gzip", "zstd"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_blob_is_reported(algo: str, keep: float) -> None:
    blob = _compress(PLAIN, algo)
    cut = blob[: int(len(blob) * keep)]

    with pytest.raises(InvalidArgument, match="layer is truncated"):
        open_decompressed(io.BytesIO(cut)).read()


def test_a_zstd_blob_cut_after_its_last_block_header_is_reported() -> None:
    blob = _compress(PLAIN, "zstd")
    # checksum-less frame: cutting one byte always lands inside the last block

    with pytest.raises(InvalidArgument, match="layer is truncated"):
        open_decompressed(io.BytesIO(blob[:-1])).read()


@pytest.mark.parametrize("algo", ["gzip", "zstd"])
def test_corrupt_data_is_reported(algo: str) -> None:
    blob = bytearray(_compress(PLAIN, algo))
    for i in range(20, len(blob) - 20, 97):
        blob[i] ^= 0xFF

    with pytest.raises(InvalidArgument):
        open_decompressed(io.BytesIO(bytes(blob))).read()


def test_gzip_output_is_reproducible_and_has_no_mtime_or_name() -> None:
    out = io.BytesIO()
    out.name = "/tmp/layer.tar.gz"  # the name gzip would otherwise put in the header

    with compressor(out, "gzip") as z:
        z.write(PLAIN)
    blob = out.getvalue()

    assert blob == _compress(PLAIN, "gzip")
    flags, mtime = blob[3], struct.unpack("<I", blob[4:8])[0]
    assert flags & 0x08 == 0  # FNAME
    assert mtime == 0
    assert gzip.decompress(blob) == PLAIN


def test_zstd_output_is_reproducible_and_standard() -> None:
    blob = _compress(PLAIN, "zstd", 5)

    assert blob == _compress(PLAIN, "zstd", 5)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == PLAIN


def test_compressor_leaves_the_output_open() -> None:
    out = io.BytesIO()

    with compressor(out, "zstd") as z:
        z.write(b"x")

    assert not out.closed


@pytest.mark.parametrize(("algo", "level"), [("gzip", 10), ("zstd", 99), ("xz", None)])
def test_compressor_refuses_bad_settings(algo: str, level: int | None) -> None:
    with (
        pytest.raises(InvalidArgument),
        compressor(io.BytesIO(), algo, level) as z,  # type: ignore[arg-type]
    ):
        z.write(b"x")


@pytest.mark.parametrize("algo", ["gzip", "zstd", None])
def test_layer_stream_digests_in_one_pass_match_hashlib(algo: str | None) -> None:
    blob = _compress(PLAIN, algo)
    source = io.BytesIO(blob)
    layer = LayerStream(source)

    plain = b""
    while chunk := layer.read(65536):
        plain += chunk
    sums = layer.drain()

    assert plain == PLAIN
    assert sums.compression == algo
    assert sums.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert sums.size == len(blob)
    assert sums.diff_id == "sha256:" + hashlib.sha256(PLAIN).hexdigest()
    assert sums.uncompressed_size == len(PLAIN)
    assert (layer.digest, layer.diff_id, layer.size, layer.uncompressed_size) == (
        sums.digest,
        sums.diff_id,
        sums.size,
        sums.uncompressed_size,
    )
    assert source.tell() == len(blob)  # the blob was read exactly once, to its end


def test_layer_stream_drain_reads_what_the_consumer_left() -> None:
    blob = _compress(PLAIN, "gzip")
    layer = LayerStream(io.BytesIO(blob))
    layer.read(100)

    sums = layer.drain()

    assert sums.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert sums.diff_id == "sha256:" + hashlib.sha256(PLAIN).hexdigest()


def test_layer_stream_digests_are_unknown_before_the_end() -> None:
    layer = LayerStream(io.BytesIO(_compress(PLAIN, "zstd")))
    layer.read(10)

    with pytest.raises(FailedPrecondition, match="not read to its end"):
        _ = layer.digest


def test_layer_stream_of_a_truncated_blob_raises() -> None:
    blob = _compress(PLAIN, "zstd")
    layer = LayerStream(io.BytesIO(blob[: len(blob) // 2]))

    with pytest.raises(InvalidArgument, match="layer is truncated"):
        layer.drain()
