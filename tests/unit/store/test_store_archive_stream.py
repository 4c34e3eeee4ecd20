"""A 200 MB layer goes through decompression, hashing and extraction in bounded memory.

The layer is generated lazily (a header, then the same 1 MiB chunk again and again),
so the test itself holds one chunk. Memory is measured two ways: tracemalloc's peak
for Python objects, and the peak resident set (VmHWM, reset through clear_refs) for
what the C libraries (zstd, zlib) allocate.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from moorage.store.archive import LayerStream, apply_layer

SIZE = 200 * 1024 * 1024
CHUNK = bytes(range(256)) * 4096  # 1 MiB
LIMIT = 32 * 1024 * 1024


def _tar_chunks(hasher: hashlib._Hash) -> Iterator[bytes]:
    info = tarfile.TarInfo("big.bin")
    info.size = SIZE
    info.mode = 0o644
    parts = [info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")]
    parts.extend(CHUNK for _ in range(SIZE // len(CHUNK)))
    parts.append(b"\0" * 1024)  # end of archive (SIZE is a multiple of 512)
    for part in parts:
        hasher.update(part)
        yield part


class _IterReader(io.RawIOBase):
    """A readable stream over an iterator of chunks, holding at most one."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._current:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._current = memoryview(nxt)
        n = min(len(b), len(self._current))
        b[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


def _gzip_pieces(chunks: Iterator[bytes]) -> Iterator[bytes]:
    gz = zlib.compressobj(1, wbits=31)  # gzip framing
    for chunk in chunks:
        yield gz.compress(chunk)
    yield gz.flush()


def _compressed(algo: str, chunks: Iterator[bytes], hasher: hashlib._Hash) -> Iterator[bytes]:
    if algo == "zstd":
        source = io.BufferedReader(_IterReader(chunks), 1 << 20)
        pieces = zstandard.ZstdCompressor(level=1).read_to_iter(source, read_size=1 << 20)
    else:
        pieces = _gzip_pieces(chunks)
    for piece in pieces:
        hasher.update(piece)
        yield piece


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("algo", ["zstd", "gzip"])
def test_200mb_layer_extracts_in_bounded_memory(tmp_path: Path, algo: str) -> None:
    plain_hash, blob_hash = hashlib.sha256(), hashlib.sha256()
    blob = io.BufferedReader(_IterReader(_compressed(algo, _tar_chunks(plain_hash), blob_hash)))
    target = tmp_path / "target"
    target.mkdir()
    rss_before = _vm("VmRSS")
    can_peak = _reset_peak_rss()

    tracemalloc.start()
    try:
        layer = LayerStream(blob)
        stats = apply_layer(layer, str(target), same_owner=False)
        sums = layer.drain()
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_peak = _vm("VmHWM") if can_peak else _vm("VmRSS")

    assert python_peak < LIMIT
    assert rss_peak - rss_before < LIMIT
    assert stats.bytes == SIZE
    assert os.path.getsize(target / "big.bin") == SIZE
    assert sums.diff_id == "sha256:" + plain_hash.hexdigest()
    assert sums.digest == "sha256:" + blob_hash.hexdigest()
    with open(target / "big.bin", "rb") as f:
        f.seek(SIZE - len(CHUNK))
        assert f.read() == CHUNK
