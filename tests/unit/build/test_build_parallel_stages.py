"""Independent stages build at the same time, and the output still reads as a
sequential build's (build.executor with a fake backend; build.stage_output)."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.build.backend import RunProcess
from moorage.build.executor import BuildError, BuildOptions, Executor
from moorage.build.stage_output import OrderedOutput
from moorage.build.state import ImageState, Layer, empty_state
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import parse_digest

WAIT = 10


class FakeWorkspace:
    def __init__(self, path: str) -> None:
        self.path = path
        self.ran = ""


class FakeBackend:
    """Runs nothing: a RUN's "output" is its command line, its layer a digest of it.
    ``on_run`` lets a test make RUN steps wait for each other or fail."""

    architecture = "amd64"

    def __init__(self, tmp: Path, on_run: Callable[[str], int]) -> None:
        self.tmp = tmp
        self.on_run = on_run

    def base_image(self, ref: str, *, pull: bool) -> ImageState:
        return empty_state("amd64", "2024-01-01T00:00:00Z")

    @contextlib.contextmanager
    def workspace(self, state: ImageState) -> Iterator[FakeWorkspace]:
        root = Path(tempfile.mkdtemp(dir=self.tmp))
        (root / "x").write_text("x")  # what the last stage copies from the others
        yield FakeWorkspace(str(root))

    def layer_of(self, workspace: Any, source_date_epoch: int) -> Layer | None:
        digest = parse_digest("sha256:" + hashlib.sha256(workspace.ran.encode()).hexdigest())
        return Layer(Descriptor("application/vnd.oci.image.layer.v1.tar", digest, 1), digest)

    def run(self, workspace: Any, process: RunProcess, output: Callable[[bytes], None]) -> int:
        workspace.ran = " ".join(process.argv)
        output(f"ran {process.argv[-1]}\n".encode())
        return self.on_run(process.argv[-1])

    def cache_dir(self, cache_id: str, mode: int, uid: int, gid: int) -> str:
        return str(self.tmp)

    def lookup_user(self, workspace: Any, user: str) -> tuple[int, int]:
        return 0, 0


class NoCache:
    def get(self, key: str) -> ImageState | None:
        return None

    def put(self, key: str, state: ImageState) -> None:
        pass


TWO_INDEPENDENT_STAGES = """\
FROM scratch AS a
RUN first-a
RUN second-a
FROM scratch AS b
RUN only-b
FROM scratch
COPY --from=a /x /from-a
COPY --from=b /x /from-b
RUN final
"""


def _build(tmp_path: Path, on_run: Callable[[str], int], text: str) -> list[str]:
    lines: list[str] = []
    executor = Executor(
        FakeBackend(tmp_path, on_run),
        NoCache(),
        str(tmp_path),
        lambda m: lines.append(m.get("stream", "")),
    )
    executor.build(text, BuildOptions())
    return lines


def test_independent_stages_run_at_the_same_time(tmp_path: Path) -> None:
    both = threading.Barrier(2, timeout=WAIT)  # only passes when a and b run at once

    def on_run(command: str) -> int:
        if command in ("first-a", "only-b"):
            both.wait()
        return 0

    _build(tmp_path, on_run, TWO_INDEPENDENT_STAGES)


def test_the_output_reads_as_a_sequential_build(tmp_path: Path) -> None:
    b_done = threading.Event()

    def on_run(command: str) -> int:
        if command == "first-a":
            assert b_done.wait(WAIT)  # stage b finishes first, yet prints after a
        if command == "only-b":
            b_done.set()
        return 0

    text = "".join(_build(tmp_path, on_run, TWO_INDEPENDENT_STAGES))

    steps = [line for line in text.splitlines() if line.startswith(("Step", "ran"))]
    assert steps == [
        "Step 1/9 : FROM scratch AS a",
        "Step 2/9 : RUN first-a",
        "ran first-a",
        "Step 3/9 : RUN second-a",
        "ran second-a",
        "Step 4/9 : FROM scratch AS b",
        "Step 5/9 : RUN only-b",
        "ran only-b",
        "Step 6/9 : FROM scratch",
        "Step 7/9 : COPY --from=a /x /from-a",
        "Step 8/9 : COPY --from=b /x /from-b",
        "Step 9/9 : RUN final",
        "ran final",
    ]


def test_a_stage_that_needs_another_waits_for_it(tmp_path: Path) -> None:
    order: list[str] = []

    def on_run(command: str) -> int:
        order.append(command)
        return 0

    _build(tmp_path, on_run, "FROM scratch AS a\nRUN in-a\nFROM a\nRUN after-a\n")
    # (the last stage is built on a, so a is needed)

    assert order == ["in-a", "after-a"]


def test_a_failing_stage_fails_the_build_with_its_error_and_its_output(tmp_path: Path) -> None:
    lines: list[str] = []

    def on_run(command: str) -> int:
        return 3 if command == "only-b" else 0

    executor = Executor(
        FakeBackend(tmp_path, on_run),
        NoCache(),
        str(tmp_path),
        lambda m: lines.append(m.get("stream", "")),
    )
    with pytest.raises(BuildError, match="only-b' returned a non-zero code: 3"):
        executor.build(TWO_INDEPENDENT_STAGES, BuildOptions())
    assert "ran only-b\n" in lines
    assert not any("final" in line for line in lines)


def test_ordered_output_holds_later_stages_until_earlier_ones_finish() -> None:
    seen: list[str] = []
    out = OrderedOutput(lambda m: seen.append(m["stream"]), order=[0, 2, 5])

    out.emitter(2)({"stream": "two"})
    out.emitter(5)({"stream": "five"})
    out.emitter(0)({"stream": "zero"})
    assert seen == ["zero"]
    out.finished(2)  # done early: still waits for 0
    assert seen == ["zero"]
    out.finished(0)
    assert seen == ["zero", "two", "five"]
    out.emitter(5)({"stream": "live"})
    assert seen[-1] == "live"


def test_ordered_output_flush_shows_everything_held() -> None:
    seen: list[str] = []
    out = OrderedOutput(lambda m: seen.append(m["stream"]), order=[0, 1])
    out.emitter(1)({"stream": "one"})

    out.flush()

    assert seen == ["one"]
