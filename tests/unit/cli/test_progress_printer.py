"""Pull and push progress as the CLI prints it: redrawn per layer on a terminal, one line
per change of status elsewhere; an error message ends the stream."""

from __future__ import annotations

import io

import pytest

from moorage.cli.progress import ProgressPrinter, show_stream
from moorage.errors import FailedPrecondition

STREAM = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 1, "total": 4},
     "progress": "[=>  ]", "id": "aaa"},
    {"status": "Downloading", "progressDetail": {"current": 2, "total": 4},
     "progress": "[==> ]", "id": "aaa"},
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Digest: sha256:abc"},
    {"progressDetail": {}, "aux": {"Tag": "1"}},
]  # fmt: skip


def test_plain_output_has_a_line_per_change_of_status() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, tty=False)
    for message in STREAM:
        printer.show(message)
    assert out.getvalue().splitlines() == [
        "latest: Pulling from library/busybox",
        "aaa: Pulling fs layer",
        "bbb: Pulling fs layer",
        "aaa: Downloading",
        "aaa: Download complete",
        "bbb: Pull complete",
        "Digest: sha256:abc",
    ]


def test_a_terminal_gets_each_layer_redrawn_in_place() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, tty=True, width=80)
    for message in STREAM[:4]:
        printer.show(message)
    text = out.getvalue()
    assert text.startswith(
        "latest: Pulling from library/busybox\naaa: Pulling fs layer\nbbb: Pulling fs layer\n"
    )
    # "aaa" is two rows up from the cursor: up 2, clear the row, write, down 2.
    assert text.endswith("\x1b[2A\r\x1b[2Kaaa: Downloading [=>  ]\x1b[2B\r")


def test_long_lines_are_cut_to_the_terminal_s_width() -> None:
    out = io.StringIO()
    ProgressPrinter(out, tty=True, width=20).show({"status": "x" * 50, "id": "abc"})
    assert out.getvalue() == "abc: " + "x" * 14 + "\n"


def test_an_error_message_raises() -> None:
    out = io.StringIO()
    error = {"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"}
    with pytest.raises(FailedPrecondition, match="manifest unknown"):
        show_stream([STREAM[0], error], out, quiet=True)
    assert out.getvalue() == ""
