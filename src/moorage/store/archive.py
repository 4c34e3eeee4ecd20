"""Layer archives: the tar streams images are made of, read and written safely.

The facade over three private-by-role modules:

- :mod:`~moorage.store.compression`: gzip/zstd detection, streaming decompression,
  reproducible compression, and :class:`LayerStream` (digest and diff_id in one pass);
- :mod:`~moorage.store.archive_apply`: :func:`apply_layer`, extraction that can never
  write outside its target, with OCI whiteouts deleted or turned into overlayfs ones;
- :mod:`~moorage.store.archive_diff`: :func:`write_diff` (an overlay upper directory,
  or two trees compared) and :func:`tar_directory`, reproducible tars.

A pull unpacks a layer like this::

    with open(blob_path, "rb") as blob:
        layer = LayerStream(blob)
        apply_layer(layer.uncompressed(), snapshot_upper, whiteouts="overlay")
        sums = layer.drain()
    if sums.digest != expected_digest: ...

and a commit writes one like this::

    with open(tmp_path, "wb") as f, compressor(f, "gzip") as z:
        write_diff(z, container_upper, source_date_epoch=sde)
"""

from __future__ import annotations

from moorage.store.archive_apply import (
    OPAQUE_MARKER,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    ApplyStats,
    LinkBelowLayer,
    Whiteouts,
    apply_layer,
    is_private,
    keep_xattr,
    split_entry_name,
)
from moorage.store.archive_diff import DiffStats, tar_directory, write_diff
from moorage.store.compression import (
    DEFAULT_LEVELS,
    Compression,
    LayerDigests,
    LayerStream,
    Readable,
    Writable,
    compressor,
    detect_compression,
    open_decompressed,
)

__all__ = [
    "LinkBelowLayer",
    "DEFAULT_LEVELS",
    "OPAQUE_MARKER",
    "OVERLAY_OPAQUE_XATTR",
    "WHITEOUT_PREFIX",
    "ApplyStats",
    "Compression",
    "DiffStats",
    "LayerDigests",
    "LayerStream",
    "Readable",
    "Whiteouts",
    "Writable",
    "apply_layer",
    "compressor",
    "detect_compression",
    "is_private",
    "keep_xattr",
    "open_decompressed",
    "split_entry_name",
    "tar_directory",
    "write_diff",
]
