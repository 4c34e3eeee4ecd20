"""json-file logs: writing, rotation, reading, following, framing, time filters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from moorage.engine import logs
from moorage.engine.logs import (
    MAX_LINE,
    JsonFileWriter,
    LogLine,
    LogOpts,
    frame,
    parse_log_opts,
    parse_time_filter,
    parse_time_filter_ns,
    read_logs,
    unframe,
)
from moorage.errors import InvalidArgument, NotSupported

T0 = 1_700_000_000.0


def ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def datas(lines: Iterator[LogLine] | list[LogLine]) -> list[bytes]:
    return [line.data for line in lines]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "ctr-json.log"


# -- writer ------------------------------------------------------------------------


def test_writer_splits_lines_and_keeps_newlines(log_path: Path) -> None:
    with JsonFileWriter(log_path) as w:
        w.write("stdout", b"one\ntwo\n", when=T0)

    assert entries(log_path) == [
        {"log": "one\n", "stream": "stdout", "time": "2023-11-14T22:13:20.000000000Z"},
        # One nanosecond later: every line has a time of its own, in order.
        {"log": "two\n", "stream": "stdout", "time": "2023-11-14T22:13:20.000000001Z"},
    ]


def test_writer_line_format_is_compact_json_in_dockers_key_order(log_path: Path) -> None:
    with JsonFileWriter(log_path) as w:
        w.write("stderr", b"x\n", when=T0 + 0.5)

    assert log_path.read_bytes() == (
        b'{"log":"x\\n","stream":"stderr","time":"2023-11-14T22:13:20.500000000Z"}\n'
    )


def test_writer_buffers_partial_line_per_stream(log_path: Path) -> None:
    w = JsonFileWriter(log_path)
    w.write("stdout", b"hel", when=T0)
    w.write("stderr", b"err\n", when=T0)
    w.write("stdout", b"lo\nwor", when=T0)
    written = [(e["stream"], e["log"]) for e in entries(log_path)]
    w.close()

    assert written == [("stderr", "err\n"), ("stdout", "hello\n")]
    assert entries(log_path)[-1]["log"] == "wor"


def test_writer_flush_partial_writes_without_newline(log_path: Path) -> None:
    w = JsonFileWriter(log_path)
    w.write("stdout", b"prompt> ", when=T0)
    w.flush_partial(when=T0)
    w.write("stdout", b"answer\n", when=T0)
    w.close()

    assert [e["log"] for e in entries(log_path)] == ["prompt> ", "answer\n"]


def test_writer_splits_long_lines_at_16k(log_path: Path) -> None:
    with JsonFileWriter(log_path) as w:
        w.write("stdout", b"a" * (MAX_LINE - 1) + b"\n" + b"b" * (2 * MAX_LINE + 5) + b"\n")

    sizes = [len(e["log"]) for e in entries(log_path)]
    assert sizes == [MAX_LINE, MAX_LINE, MAX_LINE, 6]
    assert [e["log"].endswith("\n") for e in entries(log_path)] == [True, False, False, True]


def test_writer_line_of_exactly_16k_leaves_lone_newline(log_path: Path) -> None:
    with JsonFileWriter(log_path) as w:
        w.write("stdout", b"c" * MAX_LINE + b"\n")

    assert [e["log"] for e in entries(log_path)] == ["c" * MAX_LINE, "\n"]


def test_writer_replaces_invalid_utf8_per_byte(log_path: Path) -> None:
    with JsonFileWriter(log_path) as w:
        w.write("stdout", b"ok \xff \xe2\x82 \xe2\x82\xac\n")

    assert entries(log_path)[0]["log"] == "ok \ufffd \ufffd\ufffd \u20ac\n"


def test_writer_rejects_unknown_stream(log_path: Path) -> None:
    with JsonFileWriter(log_path) as w, pytest.raises(InvalidArgument, match="stdin"):
        w.write("stdin", b"x\n")  # type: ignore[arg-type]


def test_writer_rotates_keeping_max_file_files(log_path: Path) -> None:
    line_size = len(logs._encode_line("stdout", b"0000\n", 0))
    with JsonFileWriter(log_path, max_size=2 * line_size, max_file=3) as w:
        for i in range(9):
            w.write("stdout", f"{i:04d}\n".encode(), when=T0)

    names = sorted(p.name for p in log_path.parent.iterdir())
    assert names == ["ctr-json.log", "ctr-json.log.1", "ctr-json.log.2"]
    assert [e["log"] for e in entries(log_path.parent / "ctr-json.log.2")] == ["0004\n", "0005\n"]
    assert [e["log"] for e in entries(log_path)] == ["0008\n"]
    assert all(p.stat().st_size <= 2 * line_size for p in log_path.parent.iterdir())


def test_writer_with_max_file_one_starts_over(log_path: Path) -> None:
    line_size = len(logs._encode_line("stdout", b"0000\n", 0))
    with JsonFileWriter(log_path, max_size=2 * line_size, max_file=1) as w:
        for i in range(5):
            w.write("stdout", f"{i:04d}\n".encode(), when=T0)

    assert [p.name for p in log_path.parent.iterdir()] == ["ctr-json.log"]
    assert [e["log"] for e in entries(log_path)] == ["0004\n"]


def test_writer_cuts_torn_tail_left_by_a_crash(log_path: Path) -> None:
    log_path.write_bytes(logs._encode_line("stdout", b"kept\n", 0) + b'{"log":"tor')

    with JsonFileWriter(log_path) as w:
        w.write("stdout", b"next\n")

    assert [e["log"] for e in entries(log_path)] == ["kept\n", "next\n"]


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ({}, LogOpts(None, 1)),
        ({"max-size": "10m", "max-file": "3"}, LogOpts(10 << 20, 3)),
        ({"max-size": "512k"}, LogOpts(512 << 10, 1)),
        ({"max-size": "1g"}, LogOpts(1 << 30, 1)),
        ({"max-size": "2MB"}, LogOpts(2 << 20, 1)),
        ({"max-size": "1000"}, LogOpts(1000, 1)),
        ({"max-size": "1m", "compress": "false"}, LogOpts(1 << 20, 1)),
    ],
)
def test_parse_log_opts_accepts_docker_units(opts: dict[str, str], expected: LogOpts) -> None:
    assert parse_log_opts(opts) == expected


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"max-size": "ten"}, "max-size"),
        ({"max-size": "0"}, "max-size"),
        ({"max-size": "1m", "max-file": "0"}, "max-file"),
        ({"max-size": "1m", "max-file": "x"}, "max-file"),
        ({"max-sise": "1m"}, "max-sise"),
    ],
)
def test_parse_log_opts_names_the_bad_option(opts: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_log_opts(opts)


def test_parse_log_opts_refuses_unimplemented_docker_options() -> None:
    with pytest.raises(NotSupported, match="compress"):
        parse_log_opts({"max-size": "1m", "compress": "true"})


# -- reader ------------------------------------------------------------------------


def write_lines(path: Path, lines: list[tuple[str, bytes, float]]) -> None:
    with path.open("ab") as f:
        for stream, data, when in lines:
            f.write(logs._encode_line(stream, data, logs._to_ns(when)))


def test_read_returns_lines_with_times(log_path: Path) -> None:
    write_lines(log_path, [("stdout", b"a\n", T0), ("stderr", b"b\n", T0 + 1.25)])

    got = list(read_logs(log_path))

    assert got == [
        LogLine("stdout", b"a\n", T0, "2023-11-14T22:13:20.000000000Z"),
        LogLine("stderr", b"b\n", T0 + 1.25, "2023-11-14T22:13:21.250000000Z"),
    ]


def test_read_of_missing_file_is_empty(log_path: Path) -> None:
    assert list(read_logs(log_path)) == []


def test_read_round_trips_written_bytes(log_path: Path) -> None:
    payload = b"x" * (MAX_LINE * 2 + 3) + b"\nshort\npartial"
    with JsonFileWriter(log_path) as w:
        w.write("stdout", payload)

    assert b"".join(datas(read_logs(log_path))) == payload


def test_read_filters_streams(log_path: Path) -> None:
    write_lines(log_path, [("stdout", b"o\n", T0), ("stderr", b"e\n", T0)])

    assert datas(read_logs(log_path, stdout=False)) == [b"e\n"]
    assert datas(read_logs(log_path, stderr=False)) == [b"o\n"]


def test_read_with_timestamps_prefixes_data(log_path: Path) -> None:
    write_lines(log_path, [("stdout", b"a\n", T0 + 0.000001)])

    assert datas(read_logs(log_path, timestamps=True)) == [b"2023-11-14T22:13:20.000001000Z a\n"]


def test_read_accepts_dockers_trimmed_fractions(log_path: Path) -> None:
    log_path.write_bytes(b'{"log":"a\\n","stream":"stdout","time":"2023-11-14T22:13:20.5Z"}\n')

    (line,) = read_logs(log_path)

    assert line.time == T0 + 0.5
    assert line.time_text == "2023-11-14T22:13:20.500000000Z"


def test_read_skips_torn_last_line(log_path: Path) -> None:
    write_lines(log_path, [("stdout", b"a\n", T0)])
    with log_path.open("ab") as f:
        f.write(b'{"log":"b\\n","stre')

    assert datas(read_logs(log_path)) == [b"a\n"]
    assert datas(read_logs(log_path, tail=1)) == [b"a\n"]


def test_read_skips_garbage_line_in_the_middle(log_path: Path) -> None:
    write_lines(log_path, [("stdout", b"a\n", T0)])
    with log_path.open("ab") as f:
        f.write(b"not json\n")
    write_lines(log_path, [("stdout", b"b\n", T0)])

    assert datas(read_logs(log_path)) == [b"a\n", b"b\n"]


def rotated(log_path: Path, count: int) -> list[bytes]:
    line_size = len(logs._encode_line("stdout", b"0000\n", 0))
    with JsonFileWriter(log_path, max_size=3 * line_size, max_file=4) as w:
        for i in range(count):
            w.write("stdout", f"{i:04d}\n".encode(), when=T0 + i)
    return [f"{i:04d}\n".encode() for i in range(count)]


def test_read_across_rotated_files_oldest_first(log_path: Path) -> None:
    expected = rotated(log_path, 11)  # files of 3, 3, 3, 2 lines

    assert datas(read_logs(log_path)) == expected


@pytest.mark.parametrize("tail", [0, 1, 2, 3, 5, 9, 11, 50])
def test_tail_counts_across_rotated_files(log_path: Path, tail: int) -> None:
    expected = rotated(log_path, 11)

    assert datas(read_logs(log_path, tail=tail)) == expected[len(expected) - tail :][:tail]


def test_tail_reads_little_of_a_large_file(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = logs._encode_line("stdout", b"y" * 200 + b"\n", logs._to_ns(T0))
    block = line * 1000
    with log_path.open("wb") as f:
        for _ in range(40):  # about 10 MB
            f.write(block)
    write_lines(log_path, [("stdout", f"last{i}\n".encode(), T0) for i in range(3)])
    bytes_read = 0
    real_open = logs._open_log

    class Counting:
        def __init__(self, f: BinaryIO) -> None:
            self.f = f

        def read(self, n: int = -1) -> bytes:
            nonlocal bytes_read
            data = self.f.read(n)
            bytes_read += len(data)
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

    monkeypatch.setattr(logs, "_open_log", lambda p: Counting(real_open(p)))

    got = datas(read_logs(log_path, tail=3))

    assert got == [b"last0\n", b"last1\n", b"last2\n"]
    assert log_path.stat().st_size > 10_000_000
    assert bytes_read <= 4 * 64 * 1024


def test_since_is_inclusive_and_until_is_inclusive(log_path: Path) -> None:
    write_lines(log_path, [("stdout", f"{i}\n".encode(), T0 + i) for i in range(6)])

    got = datas(read_logs(log_path, since_ns=ns(T0 + 1), until_ns=ns(T0 + 3)))

    assert got == [b"1\n", b"2\n", b"3\n"]


def test_tail_applies_before_since(log_path: Path) -> None:
    write_lines(log_path, [("stdout", f"{i}\n".encode(), T0 + i) for i in range(6)])

    assert datas(read_logs(log_path, tail=3, since_ns=ns(T0 + 4))) == [b"4\n", b"5\n"]


# -- follow ------------------------------------------------------------------------


class Follower:
    """Runs ``read_logs(follow=True)`` in a thread; lets a test await lines.

    ``waiting`` is set each time the reader has caught up and polls for more.
    """

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> None:
        self.waiting = threading.Event()
        real_wait = logs._wait_for_more

        def wait(p: str) -> None:
            self.waiting.set()
            real_wait(p)

        monkeypatch.setattr(logs, "_wait_for_more", wait)
        self.lines: list[bytes] = []
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(path, kwargs), daemon=True)
        self.thread.start()

    def _run(self, path: Path, kwargs: dict[str, Any]) -> None:
        try:
            for line in read_logs(path, follow=True, stop=self.stopped.is_set, **kwargs):
                with self.cond:
                    self.lines.append(line.data)
                    self.cond.notify_all()
        finally:
            self.done.set()

    def wait_for(self, count: int) -> list[bytes]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.lines) >= count, timeout=10)
            return list(self.lines)

    def finish(self) -> list[bytes]:
        self.stopped.set()
        assert self.done.wait(timeout=10)
        return self.lines


def test_follow_picks_up_new_lines(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = JsonFileWriter(log_path)
    w.write("stdout", b"old\n")
    follower = Follower(log_path, monkeypatch)
    assert follower.wait_for(1) == [b"old\n"]

    w.write("stdout", b"new\n")

    assert follower.wait_for(2) == [b"old\n", b"new\n"]
    w.close()
    assert follower.finish() == [b"old\n", b"new\n"]


def test_follow_with_tail_zero_shows_only_new_lines(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = JsonFileWriter(log_path)
    w.write("stdout", b"old\n")
    follower = Follower(log_path, monkeypatch, tail=0)
    assert follower.waiting.wait(timeout=10)

    w.write("stdout", b"new\n")

    assert follower.wait_for(1) == [b"new\n"]
    w.close()
    follower.finish()


@pytest.mark.parametrize("max_file", [1, 3])
def test_follow_continues_across_rotation(
    log_path: Path, max_file: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    line_size = len(logs._encode_line("stdout", b"0000\n", 0))
    w = JsonFileWriter(log_path, max_size=2 * line_size, max_file=max_file)
    w.write("stdout", b"0000\n")
    follower = Follower(log_path, monkeypatch)
    follower.wait_for(1)

    for i in range(1, 4):
        w.write("stdout", f"{i:04d}\n".encode())
        follower.wait_for(i + 1)  # max-file 1 drops lines a reader has not seen yet

    w.close()
    assert follower.finish() == [f"{i:04d}\n".encode() for i in range(4)]


def test_follow_reads_to_the_end_when_stopped(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = JsonFileWriter(log_path)
    follower = Follower(log_path, monkeypatch)
    w.write("stdout", b"last words\n")
    w.write("stdout", b"torn")  # never flushed: not a line
    follower.stopped.set()

    assert follower.finish() == [b"last words\n"]
    w.close()


def test_follow_waits_for_the_file_to_appear(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    follower = Follower(log_path, monkeypatch)
    assert follower.waiting.wait(timeout=10)

    with JsonFileWriter(log_path) as w:
        w.write("stdout", b"hello\n")

    assert follower.wait_for(1) == [b"hello\n"]
    follower.finish()


def test_follow_ends_at_a_line_after_until(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = JsonFileWriter(log_path)
    follower = Follower(log_path, monkeypatch, until_ns=ns(T0 + 1))
    w.write("stdout", b"in\n", when=T0)
    w.write("stdout", b"out\n", when=T0 + 2)

    assert follower.done.wait(timeout=10)
    assert follower.lines == [b"in\n"]
    w.close()


# -- framing -----------------------------------------------------------------------


def test_frame_header() -> None:
    assert frame(2, b"abc") == b"\x02\x00\x00\x00\x00\x00\x00\x03abc"


def test_unframe_round_trip_from_chunks_cut_anywhere() -> None:
    frames = [(1, b"out\n"), (2, b"err\n"), (1, b""), (1, b"z" * 70000)]
    stream = b"".join(frame(s, d) for s, d in frames)
    chunks = [stream[i : i + 5] for i in range(0, len(stream), 5)]

    assert list(unframe(stream)) == frames
    assert list(unframe(chunks)) == frames


def test_unframe_rejects_truncated_frame() -> None:
    with pytest.raises(InvalidArgument, match="truncated"):
        list(unframe(frame(1, b"abc")[:-1]))


def test_frame_rejects_unknown_stream() -> None:
    with pytest.raises(InvalidArgument, match="7"):
        frame(7, b"")


# -- time filters ------------------------------------------------------------------


def local(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    return time.mktime((year, month, day, hour, minute, second, 0, 0, -1))


NOW = 1_700_000_000.75


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10m", 1_700_000_000 - 600),
        ("1h30m", 1_700_000_000 - 5400),
        ("42s", 1_700_000_000 - 42),
        ("1.5h", 1_700_000_000 - 5400),
        ("1700000000", 1_700_000_000.0),
        ("1700000000.123", 1_700_000_000.123),
        ("0", 0.0),
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.5Z", T0 + 0.5),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789 / 1e9),
        ("2023-11-14T23:13:20+01:00", T0),
        ("2023-11-14T21:13:20.25-01:00", T0 + 0.25),
        ("2023-11-14T22:13:20", local(2023, 11, 14, 22, 13, 20)),
        ("2023-11-14T22:13", local(2023, 11, 14, 22, 13, 0)),
        ("2023-11-14", local(2023, 11, 14, 0, 0, 0)),
    ],
)
def test_parse_time_filter(value: str, expected: float) -> None:
    assert parse_time_filter(value, now=NOW) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("value", ["", "yesterday", "10x", "2023-13-01", "12:00", "-5"])
def test_parse_time_filter_rejects_garbage(value: str) -> None:
    with pytest.raises(InvalidArgument, match="failed to parse"):
        parse_time_filter(value, now=NOW)


def test_parse_time_filter_matches_line_times(log_path: Path) -> None:
    write_lines(log_path, [("stdout", b"a\n", T0), ("stdout", b"b\n", T0 + 0.123456789)])
    (_, second) = read_logs(log_path)

    since = parse_time_filter_ns(second.time_text, now=NOW)

    assert datas(read_logs(log_path, since_ns=since)) == [b"b\n"]
    assert datas(read_logs(log_path, until_ns=since - 1)) == [b"a\n"]


def test_until_separates_lines_a_few_nanoseconds_apart(log_path: Path) -> None:
    with log_path.open("ab") as f:  # 2 ns apart: one float of seconds apart at most
        f.write(logs._encode_line("stdout", b"a\n", ns(T0) + 1))
        f.write(logs._encode_line("stdout", b"b\n", ns(T0) + 3))
    (first, _) = read_logs(log_path)
    until = parse_time_filter_ns(first.time_text, now=NOW)
    assert datas(read_logs(log_path, until_ns=until)) == [b"a\n"]
