"""The output of a project's containers, line by line and interleaved.

:func:`stream_logs` reads the log of each container in a thread of its own and yields
:class:`LogLine` objects as they arrive, whichever container they come from; it ends
when every log has ended (with ``follow``, when the containers have stopped).
Without ``follow``, :func:`collect_logs` gives the lines of all containers in the
order they were written, by the timestamps the engine keeps.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from moorage.api.client import Client
from moorage.api.streams_client import Demultiplexer
from moorage.errors import MoorageError

__all__ = ["LogLine", "LogSource", "collect_logs", "stream_logs"]


@dataclass(frozen=True)
class LogSource:
    id: str
    name: str  # what the prefix shows: service-number
    service: str
    tty: bool = False


@dataclass(frozen=True)
class LogLine:
    source: LogSource
    text: str  # without the newline
    stderr: bool = False
    timestamp: str = ""
    end: bool = False  # the source's log ended (no text)


class _Lines:
    """A file to write bytes into that hands out whole lines."""

    def __init__(self, emit: Any, stderr: bool) -> None:
        self.emit = emit
        self.stderr = stderr
        self.pending = b""

    def write(self, data: bytes) -> int:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.emit(line.removesuffix(b"\r"), self.stderr)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.pending:
            self.emit(self.pending, self.stderr)
            self.pending = b""


def _read(
    client: Client,
    source: LogSource,
    *,
    follow: bool,
    tail: str,
    timestamps: bool,
    since: str | None = None,
) -> Iterator[LogLine]:
    params = {
        "stdout": 1,
        "stderr": 1,
        "follow": int(follow),
        "tail": tail,
        "timestamps": int(timestamps),
        "since": since,
    }
    response = client.request("GET", f"/containers/{source.id}/logs", params=params)
    ready: list[LogLine] = []

    def emit(raw: bytes, stderr: bool) -> None:
        text = raw.decode(errors="replace")
        stamp = ""
        if timestamps:
            stamp, _, text = text.partition(" ")
        ready.append(LogLine(source, text, stderr, stamp))

    out, err = _Lines(emit, False), _Lines(emit, True)
    demux = None if source.tty else Demultiplexer(out, err)  # type: ignore[arg-type]
    try:
        for chunk in response.iter_available(64 * 1024):
            if demux is None:
                out.write(chunk)
            else:
                demux.feed(chunk)
            yield from ready
            ready.clear()
        out.close()
        err.close()
        yield from ready
    finally:
        response.close()


def _order(line: LogLine) -> tuple[str, str]:
    """RFC 3339 with nanoseconds, whose fraction Go trims: sortable once padded."""
    head, _, rest = line.timestamp.partition(".")
    fraction = rest.rstrip("Z").split("+")[0].split("-")[0]
    return head, fraction.ljust(9, "0")


def collect_logs(
    client: Client, sources: Sequence[LogSource], *, tail: str = "all"
) -> list[LogLine]:
    """Every line of every container so far, oldest first."""
    lines: list[LogLine] = []
    for source in sources:
        try:
            lines.extend(_read(client, source, follow=False, tail=tail, timestamps=True))
        except MoorageError:
            continue  # removed in the meantime
    return sorted(lines, key=_order)


def stream_logs(
    client: Client,
    sources: Sequence[LogSource],
    *,
    follow: bool = True,
    tail: str = "all",
    since: str | None = None,
) -> Iterator[LogLine]:
    """Lines from all ``sources`` as they come (see the module doc), and an ``end``
    line for each source whose log has ended."""
    inbox: queue.Queue[LogLine | LogSource] = queue.Queue()

    def pump(source: LogSource) -> None:
        try:
            for line in _read(
                client, source, follow=follow, tail=tail, timestamps=True, since=since
            ):
                inbox.put(line)
        except (MoorageError, OSError):
            pass  # the container went away: its log ends here
        finally:
            inbox.put(source)  # this one is done

    for source in sources:
        threading.Thread(target=pump, args=(source,), daemon=True).start()
    left = len(sources)
    while left:
        try:
            item = inbox.get(timeout=0.5)  # a timeout, so that Ctrl-C is seen at once
        except queue.Empty:
            continue
        if isinstance(item, LogSource):
            left -= 1
            yield LogLine(item, "", end=True)
        else:
            yield item
