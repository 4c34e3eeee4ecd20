"""The live display of ``moor build --progress tty`` (cli.build_display), fed the
classic builder's text as the daemon sends it, in pieces that split lines."""

from __future__ import annotations

import io

from moorage.cli.build_display import TtyDisplay

BUILD = (
    "Step 1/3 : FROM busybox\n"
    " ---> 5a2a1f1e1300\n"
    "Step 2/3 : COPY app/ /app/\n"
    " ---> Using cache\n"
    " ---> 75aad7a9a4b8\n"
    "Step 3/3 : RUN make\n"
    "compiling\n"
    "linking\n"
    " ---> 8cfa3c9a9e3c\n"
    "Successfully built 8cfa3c9a9e3c\n"
    "Successfully tagged app:1\n"
)


def _shown(text: str, *, failed: bool = False, piece: int = 7) -> str:
    out = io.StringIO()
    display = TtyDisplay(out)
    for start in range(0, len(text), piece):
        display.feed(text[start : start + piece])
    display.close(failed=failed)
    return out.getvalue()


def test_every_step_gets_a_line_with_its_state_and_time() -> None:
    shown = _shown(BUILD)

    assert "[+] Built" in shown
    assert "(3/3)" in shown
    assert "=> [1/3] FROM busybox" in shown
    assert "=> CACHED [2/3] COPY app/ /app/" in shown
    assert "=> [3/3] RUN make" in shown
    assert "Successfully tagged app:1" in shown
    assert "compiling" not in shown  # a finished step's output is not kept on screen


def test_a_failing_step_shows_all_its_output() -> None:
    failing = "Step 1/2 : FROM busybox\n ---> 5a2a1f1e1300\nStep 2/2 : RUN make\n" + "".join(
        f"line {n}\n" for n in range(10)
    )

    shown = _shown(failing, failed=True)

    assert "> [2/2] RUN make:" in shown
    assert all(f"line {n}" in shown for n in range(10))
