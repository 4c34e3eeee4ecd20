"""Container logs in Docker's json-file format: the writer, the reader, stream framing.

The per-container monitor owns a :class:`JsonFileWriter`; the daemon reads with
:func:`read_logs`. One file line is one JSON object, exactly Docker's shape::

    {"log":"hello\\n","stream":"stdout","time":"2026-11-25T10:00:00.123456789Z"}

Writing follows Docker's log copier and json-file driver:

- output is cut into lines that keep their ``\\n``; a line longer than 16 KiB is cut
  into 16 KiB pieces without ``\\n`` (Docker's partial messages), so a reader gets the
  exact bytes back by concatenating ``log`` fields;
- bytes that are not UTF-8 become U+FFFD, one per bad byte, as Go's encoder does;
- ``time`` is UTC RFC 3339 with nine fraction digits (Docker trims trailing zeros;
  both forms parse the same everywhere);
- rotation (``--log-opt max-size=10m,max-file=3``): before a line that would take the
  file past max-size, ``path.{n-1}`` is dropped, ``path.{i}`` becomes ``path.{i+1}``,
  ``path`` becomes ``path.1`` and a new ``path`` is started. Docker rotates once the
  file has *reached* max-size, so its files overshoot by one line; ours stay within
  max-size unless a single line is bigger. With max-file 1 the file starts over.

Crash safety: every line is appended with one ``write()`` on an ``O_APPEND`` file, so
a crash can only tear the last line; the reader skips it and a new writer on the same
file cuts it off before appending. Lines are not fsynced one by one (that would cost a
disk flush per line of output); :meth:`JsonFileWriter.sync` is there for the monitor
to call when the container exits. A host crash may therefore lose the last seconds of
output, as with Docker.

Reading follows ``docker logs``: rotated files oldest first, ``tail`` counted over
lines of both streams before the ``since``/``until`` and stream filters are applied
(so ``--tail 3 --since X`` may print fewer than three lines, as in Docker); ``since``
and ``until`` are both inclusive (Docker drops lines *before* since and stops at the
first line *after* until).

Following polls every 50 ms (:func:`_wait_for_more`, the one place to swap in
inotify). A writer that rotates through every kept file between two polls loses
those files for the follower, as with any rotating log; at Docker-like sizes
(megabytes per file) that takes tens of MB/s of output.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import logging
import math
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from moorage.errors import InvalidArgument, NotSupported

__all__ = [
    "MAX_LINE",
    "JsonFileWriter",
    "LogLine",
    "LogOpts",
    "frame",
    "parse_log_opts",
    "parse_time_filter",
    "read_logs",
    "unframe",
]

log = logging.getLogger(__name__)

#: Docker's log copier buffer: the most bytes of output one file line carries.
MAX_LINE = 16 * 1024

Stream = Literal["stdout", "stderr"]
_STREAMS: tuple[Stream, ...] = ("stdout", "stderr")
_BLOCK = 64 * 1024
_POLL_INTERVAL = 0.05


# -- options -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogOpts:
    """The json-file options Moorage honours: ``max_size`` in bytes (None: no limit)."""

    max_size: int | None = None
    max_file: int = 1


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# Options Docker's json-file driver knows but Moorage does not implement yet.
_UNSUPPORTED_OPTS = ("labels", "labels-regex", "env", "env-regex", "tag")


def parse_log_opts(opts: dict[str, str]) -> LogOpts:
    """Parse ``--log-opt`` values for the json-file driver.

    Sizes use Docker's binary units (``10k``, ``10m``, ``1g``, also ``10mb``/``10MiB``)::

        >>> parse_log_opts({"max-size": "10m", "max-file": "3"})
        LogOpts(max_size=10485760, max_file=3)
    """
    for key in opts:
        if key in _UNSUPPORTED_OPTS:
            raise NotSupported(f"log opt not supported for json-file log driver: {key}")
        if key not in ("max-size", "max-file", "compress"):
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
    if opts.get("compress", "false").lower() not in ("false", "0"):
        raise NotSupported("log opt not supported for json-file log driver: compress")
    max_size: int | None = None
    if "max-size" in opts:
        raw = opts["max-size"]
        m = _SIZE_RE.match(raw.strip())
        if m is None:
            raise InvalidArgument(f"invalid max-size: {raw}")
        max_size = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])
        if max_size <= 0:
            raise InvalidArgument(f"max-size must be a positive number: {raw}")
    max_file = 1
    if "max-file" in opts:
        raw = opts["max-file"]
        try:
            max_file = int(raw)
        except ValueError:
            raise InvalidArgument(f"invalid max-file: {raw}") from None
        if max_file < 1:
            raise InvalidArgument(f"max-file cannot be less than 1: {raw}")
    return LogOpts(max_size=max_size, max_file=max_file)


# -- time --------------------------------------------------------------------------

_NS = 1_000_000_000
_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?$"
)
_DURATION_RE = re.compile(r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$")
_DURATION_PART_RE = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _to_ns(when: float) -> int:
    """Unix seconds as a float to nanoseconds. A float near 2e9 s resolves ~240 ns, so
    the fraction is rounded to whole microseconds rather than inventing digits."""
    sec = math.floor(when)
    return sec * _NS + round((when - sec) * 1_000_000) * 1000


def _format_ns(ns: int) -> str:
    """UTC RFC 3339 with nine fraction digits: Docker's ``RFC3339NanoFixed``."""
    sec, frac = divmod(ns, _NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def _parse_rfc3339_ns(text: str, *, local_default: bool = False) -> int | None:
    """Nanoseconds since the epoch, or None when ``text`` is not RFC 3339-like.

    Without a zone the time is UTC, or local time with ``local_default`` (the CLI's
    reading of ``--since 2024-01-02T10:00``).
    """
    m = _RFC3339_RE.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g or 0) for g in m.group(1, 2, 3, 4, 5, 6))
    frac = int((m.group(7) or "").ljust(9, "0"))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    fields = (year, month, day, hour, minute, second, 0, 0, -1)
    try:
        if m.group(8) or m.group(9):
            sec = calendar.timegm(fields)
            if m.group(9):
                offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
                sec -= offset if m.group(9) == "+" else -offset
        elif local_default:
            sec = int(time.mktime(fields))
        else:
            sec = calendar.timegm(fields)
    except (OverflowError, ValueError):
        return None
    return sec * _NS + frac


def parse_time_filter(value: str, now: float) -> float:
    """:func:`parse_time_filter_ns` in seconds (a float: to the ~0.2 µs)."""
    return parse_time_filter_ns(value, now) / _NS


def parse_time_filter_ns(value: str, now: float) -> int:
    """Turn a ``--since``/``--until`` value into Unix nanoseconds, as the docker CLI does.

    Accepted: a Go duration relative to ``now`` (``10m``, ``1h30m``, ``42s``; like
    Docker the result is truncated to whole seconds), an RFC 3339 timestamp with or
    without fraction and zone (no zone means local time; ``2024-01-02`` and
    ``2024-01-02T10`` work too), or Unix seconds (``1700000000.123``)::

        >>> parse_time_filter_ns("10m", now=1000.5)
        400000000000
        >>> parse_time_filter_ns("2023-11-14T22:13:20.5Z", now=0)
        1700000000500000000

    Nanoseconds, not float seconds: two log lines written a few hundred nanoseconds
    apart are one float apart at most, and ``--until`` of the first must not take both.
    """
    text = value.strip()
    if text != "0" and _DURATION_RE.match(text):
        seconds = sum(
            float(num) * _DURATION_UNITS[unit] for num, unit in _DURATION_PART_RE.findall(text)
        )
        if text.startswith("-"):
            seconds = -seconds
        return math.floor(now - seconds) * _NS
    ns = _parse_rfc3339_ns(text, local_default=True)
    if ns is not None:
        return ns
    if re.fullmatch(r"\d+(?:\.\d{1,9})?", text):
        sec, _, frac = text.partition(".")
        return int(sec) * _NS + int(frac.ljust(9, "0") or 0)
    raise InvalidArgument(f'failed to parse value as time or duration: "{value}"')


# -- writer ------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    # Go's encoder replaces each invalid byte with U+FFFD; Python's "replace" would
    # fold a truncated multi-byte sequence into one.
    out: list[str] = []
    pos = 0
    while True:
        try:
            out.append(data[pos:].decode("utf-8"))
            return "".join(out)
        except UnicodeDecodeError as exc:
            out.append(data[pos : pos + exc.start].decode("utf-8"))
            out.append("\ufffd" * (exc.end - exc.start))
            pos += exc.end


def _encode_line(stream: str, data: bytes, ns: int) -> bytes:
    """One json-file line for ``data`` written to ``stream`` at ``ns`` since the epoch."""
    obj = {"log": _decode(data), "stream": stream, "time": _format_ns(ns)}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class JsonFileWriter:
    """Appends container output to ``path`` in json-file format, rotating by size.

    Safe to call from one thread per stream. Partial lines are kept per stream until
    their newline arrives, 16 KiB of them accumulate, or :meth:`flush_partial` /
    :meth:`close` writes them as they are (without an added newline)::

        w = JsonFileWriter("ctr-json.log", max_size=10 << 20, max_file=3)
        w.write("stdout", b"hello\\nwor")   # writes "hello\\n", keeps "wor"
        w.write("stdout", b"ld\\n")         # writes "world\\n"
        w.close()
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_size: int | None = None, max_file: int = 1
    ):
        if max_size is not None and max_size <= 0:
            raise InvalidArgument(f"max-size must be a positive number: {max_size}")
        if max_file < 1:
            raise InvalidArgument(f"max-file cannot be less than 1: {max_file}")
        self.path = os.fspath(path)
        self.max_size = max_size
        self.max_file = max_file
        self._lock = threading.Lock()
        self._pending: dict[str, bytearray] = {s: bytearray() for s in _STREAMS}
        self._last_ns = 0
        self._file = self._open()
        self._size = self._cut_torn_tail()

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return os.fdopen(fd, "ab", buffering=0)

    def _cut_torn_tail(self) -> int:
        """Drop an unterminated last line left by a crashed writer; return the size."""
        size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            end = size
            while end > 0:
                start = max(0, end - _BLOCK)
                f.seek(start)
                block = f.read(end - start)
                if end == size and block.endswith(b"\n"):
                    return size
                nl = block.rfind(b"\n")
                if nl >= 0:
                    end = start + nl + 1
                    break
                end = start
        log.warning("cutting torn last line of %s at %d of %d bytes", self.path, end, size)
        os.ftruncate(self._file.fileno(), end)
        return end

    def write(self, stream: Stream, data: bytes, when: float | None = None) -> None:
        """Log ``data`` from ``stream``; ``when`` (Unix seconds) defaults to now."""
        if stream not in _STREAMS:
            raise InvalidArgument(f"invalid log stream: {stream}")
        ns = time.time_ns() if when is None else _to_ns(when)
        with self._lock:
            buf = self._pending[stream]
            buf += data
            while True:
                nl = buf.find(b"\n", 0, MAX_LINE)
                if nl >= 0:
                    cut = nl + 1
                elif len(buf) >= MAX_LINE:
                    cut = MAX_LINE
                else:
                    break
                self._append(_encode_line(stream, bytes(buf[:cut]), self._stamp(ns)))
                del buf[:cut]

    def flush_partial(self, when: float | None = None) -> None:
        """Write out buffered partial lines of both streams, without adding a newline."""
        ns = time.time_ns() if when is None else _to_ns(when)
        with self._lock:
            for stream in _STREAMS:
                buf = self._pending[stream]
                if buf:
                    self._append(_encode_line(stream, bytes(buf), self._stamp(ns)))
                    buf.clear()

    def _stamp(self, ns: int) -> int:
        """A time for the next line, after every earlier line's: lines that came in one
        read would otherwise share one, and ``--until`` of the first would take them all
        (dockerd stamps each line as it goes)."""
        self._last_ns = max(ns, self._last_ns + 1)
        return self._last_ns

    def sync(self) -> None:
        """fsync the current file (lines are not fsynced one by one)."""
        with self._lock:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush partial lines and close the file."""
        if self._file.closed:
            return
        self.flush_partial()
        with self._lock:
            self._file.close()

    def __enter__(self) -> JsonFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _append(self, line: bytes) -> None:
        if self.max_size is not None and self._size > 0 and self._size + len(line) > self.max_size:
            self._rotate()
        view = memoryview(line)
        while view:
            n = self._file.write(view)
            if n is None:  # pragma: no cover - blocking file, cannot happen
                continue
            view = view[n:]
        self._size += len(line)

    def _rotate(self) -> None:
        self._file.close()
        if self.max_file == 1:
            # A new inode rather than a truncation, so a follower sees a new file.
            os.unlink(self.path)
        else:
            for i in range(self.max_file - 1, 0, -1):
                older = f"{self.path}.{i - 1}" if i > 1 else self.path
                with contextlib.suppress(FileNotFoundError):
                    os.replace(older, f"{self.path}.{i}")
        self._file = self._open()
        self._size = 0


# -- reader ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log entry: ``data`` as bytes, ``time`` in Unix seconds, ``time_text``
    in Docker's fixed RFC 3339 nanosecond form (what ``docker logs -t`` prints)."""

    stream: str
    data: bytes
    time: float
    time_text: str


def _open_log(path: str) -> BinaryIO:
    """Open a log file for reading (unbuffered: the reader does its own blocks)."""
    return open(path, "rb", buffering=0)  # noqa: SIM115 - owned by _Cursor


def _wait_for_more(path: str) -> None:
    """Block until ``path`` may have new data. A bounded poll; inotify could replace it."""
    time.sleep(_POLL_INTERVAL)


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _log_names(path: str) -> list[str]:
    """Rotated files oldest first, then ``path`` itself; found by listing, so a gap
    left by a rotation in progress does not hide the older files."""
    directory, base = os.path.split(path)
    prefix = base + "."
    numbered: list[tuple[int, str]] = []
    try:
        entries = os.listdir(directory or ".")
    except FileNotFoundError:
        return [path]
    for name in entries:
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix.isdigit():
            numbered.append((int(suffix), os.path.join(directory, name)))
    numbered.sort(reverse=True)
    return [name for _, name in numbered] + [path]


class _Cursor:
    """An open log file and the bytes read past its last complete line."""

    def __init__(self, f: BinaryIO, offset: int = 0):
        self.f = f
        self.id = _file_id(os.fstat(f.fileno()))
        self.f.seek(offset)
        self.rest = b""

    def lines(self) -> Iterator[bytes]:
        """Complete lines available now, each with its newline."""
        while True:
            block = self.f.read(_BLOCK)
            if not block:
                return
            data = self.rest + block
            end = data.rfind(b"\n") + 1
            self.rest = data[end:]
            if end:
                yield from data[:end].splitlines(keepends=True)

    def close(self) -> None:
        self.f.close()


def _tail_start(f: BinaryIO, n: int) -> tuple[int, int]:
    """Offset where the last ``n`` complete lines of ``f`` start, and how many were
    found (fewer than ``n`` when the file is shorter). Reads backwards in blocks."""
    pos = os.fstat(f.fileno()).st_size
    seen = 0  # newlines seen from the end; the (n+1)th ends the line before ours
    while pos > 0:
        start = max(0, pos - _BLOCK)
        f.seek(start)
        block = f.read(pos - start)
        end = len(block)
        while True:
            nl = block.rfind(b"\n", 0, end)
            if nl < 0:
                break
            seen += 1
            if seen == n + 1:
                return start + nl + 1, n
            end = nl
        pos = start
    return 0, seen


def _snapshot(path: str) -> list[_Cursor]:
    """Open every log file, oldest first, consistently with respect to rotation:
    retried while a rotation moves files between the listing and the opening."""
    for _attempt in range(20):
        opened: list[tuple[str, _Cursor]] = []
        consistent = True
        for name in _log_names(path):
            try:
                opened.append((name, _Cursor(_open_log(name))))
            except FileNotFoundError:
                consistent = False
        for name, cursor in opened:
            try:
                consistent = consistent and _file_id(os.stat(name)) == cursor.id
            except FileNotFoundError:
                consistent = False
        if consistent or not opened:
            return [cursor for _, cursor in opened]
        for _, cursor in opened:
            cursor.close()
        _wait_for_more(path)
    # A writer rotating faster than we can list: read what we can get.
    cursors = []
    for name in _log_names(path):
        try:
            cursors.append(_Cursor(_open_log(name)))
        except FileNotFoundError:
            continue
    return cursors


def _successor_name(path: str, current: _Cursor) -> str | None:
    """The name of the file written after ``current``, or None when ``current`` is
    still the newest, the newest is between rename and create, or the listing raced
    with a rotation (the caller looks again on its next round)."""
    existing: list[tuple[str, tuple[int, int]]] = []
    for name in _log_names(path):
        try:
            existing.append((name, _file_id(os.stat(name))))
        except FileNotFoundError:
            continue
    ids = [fid for _, fid in existing]
    if current.id in ids:
        i = ids.index(current.id)
        return existing[i + 1][0] if i + 1 < len(existing) else None
    if os.fstat(current.f.fileno()).st_nlink == 0 and existing:
        # Rotated out or unlinked (max-file 1): the oldest left comes next.
        return existing[0][0]
    return None


def _open_successor(path: str, current: _Cursor) -> _Cursor | None:
    """Open the file written after ``current``, checking that no rotation shifted
    the names between finding it and opening it."""
    for _attempt in range(10):
        name = _successor_name(path, current)
        if name is None:
            return None
        try:
            candidate = _Cursor(_open_log(name))
            same = _file_id(os.stat(name)) == candidate.id
        except FileNotFoundError:
            continue
        if same and candidate.id != current.id and _successor_name(path, current) == name:
            return candidate
        candidate.close()
    return None


def _decode_line(raw: bytes) -> tuple[str, bytes, int] | None:
    try:
        obj = json.loads(raw)
        text, stream, stamp = obj["log"], obj["stream"], obj["time"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(text, str) and isinstance(stream, str) and isinstance(stamp, str)):
        return None
    ns = _parse_rfc3339_ns(stamp)
    if ns is None:
        return None
    return stream, text.encode("utf-8", "replace"), ns


def read_logs(
    path: str | os.PathLike[str],
    *,
    follow: bool = False,
    tail: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    timestamps: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Generator[LogLine]:
    """Log lines of ``path`` and its rotated files, oldest first.

    ``tail`` keeps the last N lines (None: all, 0: none), counted from the end without
    reading the rest. ``since_ns``/``until_ns`` are Unix nanoseconds, both inclusive. With
    ``timestamps`` each ``data`` starts with ``time_text`` and a space, as the Docker
    API sends it. An unterminated or unparsable line (a torn write) is skipped.

    With ``follow`` the iterator waits for new lines, moving on to the new file when
    the current one is rotated, until ``stop()`` returns True (the container has
    exited: the file is then read to its end) or a line after ``until`` shows up.
    Close the generator to stop following early.
    """
    name = os.fspath(path)
    # Every open cursor lives here, oldest first, so one finally closes them all.
    cursors = _snapshot(name)
    try:
        if tail is not None:
            _seek_tail(cursors, max(tail, 0))

        def select(cursor: _Cursor) -> Iterator[LogLine]:
            for raw in cursor.lines():
                decoded = _decode_line(raw)
                if decoded is None:
                    log.debug("skipping unparsable log line in %s", name)
                    continue
                stream, data, ns = decoded
                if until_ns is not None and ns > until_ns:
                    raise _PastUntil
                if since_ns is not None and ns < since_ns:
                    continue
                if (stream == "stdout" and not stdout) or (stream == "stderr" and not stderr):
                    continue
                text = _format_ns(ns)
                if timestamps:
                    data = text.encode() + b" " + data
                yield LogLine(stream, data, ns / _NS, text)

        # Every file but the newest is complete: read them through.
        while len(cursors) > 1:
            yield from select(cursors[0])
            cursors.pop(0).close()
        if cursors:
            yield from select(cursors[0])
        if not follow:
            return

        while True:
            stopping = stop() if stop is not None else False
            if not cursors:
                # No log file yet: wait for the writer to create one.
                try:
                    cursors.append(_Cursor(_open_log(name)))
                except FileNotFoundError:
                    if stopping:
                        return
                    _wait_for_more(name)
                    continue
            current = cursors[0]
            before = current.f.tell()
            yield from select(current)
            progressed = current.f.tell() != before
            successor = _open_successor(name, current)
            if successor is not None:
                cursors.append(successor)
                # Lines written before the rotation, then a torn tail is dropped.
                yield from select(current)
                cursors.pop(0).close()
                continue
            if stopping:
                return
            if not progressed:
                _wait_for_more(name)
    except _PastUntil:
        return
    finally:
        for cursor in cursors:
            cursor.close()


class _PastUntil(Exception):
    """A line after ``until``: logs are in time order, so reading ends."""


def _seek_tail(cursors: list[_Cursor], n: int) -> None:
    """Position ``cursors`` at the last ``n`` lines, closing files not needed."""
    keep_from = 0
    for i in range(len(cursors) - 1, -1, -1):
        offset, found = _tail_start(cursors[i].f, n)
        cursors[i].f.seek(offset)
        keep_from = i
        n -= found
        if n == 0:
            break
    for cursor in cursors[:keep_from]:
        cursor.close()
    del cursors[:keep_from]


# -- Docker API stream framing -----------------------------------------------------

_HEADER = struct.Struct(">BxxxI")


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: ``[stream, 0, 0, 0, len32be] + data``.

    ``stream`` is 0 (stdin), 1 (stdout), 2 (stderr) or 3 (system error)::

        >>> frame(1, b"hi")
        b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x02hi'
    """
    if stream not in (0, 1, 2, 3):
        raise InvalidArgument(f"invalid stream type: {stream}")
    return _HEADER.pack(stream, len(data)) + data


def unframe(
    buffer: bytes | bytearray | memoryview | Iterable[bytes],
) -> Iterator[tuple[int, bytes]]:
    """Split a multiplexed stream into ``(stream, data)`` pairs.

    ``buffer`` is the whole stream or an iterable of chunks cut anywhere (what a
    client reads off a socket). A stream that ends inside a frame is an error.
    """
    chunks: Iterable[bytes] = (
        [bytes(buffer)] if isinstance(buffer, bytes | bytearray | memoryview) else buffer
    )
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(pending)
            if len(pending) < _HEADER.size + size:
                break
            yield stream, bytes(pending[_HEADER.size : _HEADER.size + size])
            del pending[: _HEADER.size + size]
    if pending:
        raise InvalidArgument(f"truncated stream frame: {len(pending)} bytes left over")
