"""Builds through the engine's build service, in this process, on the real kernel: a
multi-stage build with RUN, COPY, WORKDIR and --from, the cache (hits, and what a
changed file invalidates), reproducible digests on two fresh stores, a failing RUN,
secrets that never reach a layer, and errors that point at the Dockerfile line."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.build.dockerfile.source import DockerfileError
from moorage.build.executor import BuildError
from moorage.cli.bootstrap import busybox_tar
from moorage.engine.builds import BuildRequest
from moorage.engine.config import EngineConfig
from moorage.engine.engine import Engine
from moorage.errors import InvalidArgument
from netclean import new_test_bridge, remove_daemon_networks

pytestmark = pytest.mark.root

Files = dict[str, str | bytes]


def _context(files: Files) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if isinstance(content, bytes) else 0o644
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    made: list[tuple[Engine, Path, Path, str]] = []

    def make() -> Engine:
        root = tmp_path / f"root{len(made)}"
        run = Path(f"/run/moorage-test-{uuid.uuid4().hex[:8]}")
        run.mkdir()
        bridge = new_test_bridge()
        engine = Engine(
            EngineConfig(
                root=str(root),
                exec_root=str(run),
                host=f"unix://{run}/api.sock",
                bridge=bridge,
                cgroup_parent=f"/moorage-test/{run.name}",
            )
        )
        made.append((engine, root, run, bridge))
        tar = io.BytesIO()
        busybox_tar(tar)
        tar.seek(0)
        engine.images.import_rootfs(tar, repo="busybox", tag="latest")
        return engine

    yield make
    for engine, root, run, bridge in made:
        engine.close()
        remove_daemon_networks(root, bridge)
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True, check=False)
        shutil.rmtree(run, ignore_errors=True)


class Log:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def text(self) -> str:
        return "".join(m.get("stream", "") for m in self.messages)


def _build(engine: Engine, files: Files, **request: Any) -> tuple[str, Log]:
    log = Log()
    image_id = engine.builds.build(_context(files), BuildRequest(**request), log)
    return image_id, log


MULTI_STAGE = """\
FROM busybox AS build
WORKDIR /src
COPY hello.txt .
RUN echo "built from $(cat hello.txt)" > out.txt
FROM busybox
ENV GREETING=hi
COPY --from=build /src/out.txt /out.txt
CMD ["cat", "/out.txt"]
"""


def test_a_multi_stage_build_makes_an_image_with_the_copied_result(
    engine_factory: Callable[[], Engine],
) -> None:
    engine = engine_factory()
    image_id, log = _build(
        engine, {"Dockerfile": MULTI_STAGE, "hello.txt": "hello"}, tags=("app:1",)
    )
    assert "Successfully tagged app:1" in log.text
    info = engine.images.inspect("app:1")
    assert info["Id"] == image_id
    assert info["Config"]["Cmd"] == ["cat", "/out.txt"]
    assert "GREETING=hi" in info["Config"]["Env"]
    check, check_log = _build(
        engine, {"Dockerfile": "FROM app:1\nRUN cat /out.txt && test ! -e /src\n"}
    )
    assert "built from hello" in check_log.text


def test_a_rebuild_uses_the_cache_and_a_changed_file_invalidates_from_its_copy(
    engine_factory: Callable[[], Engine],
) -> None:
    engine = engine_factory()
    files: Files = {"Dockerfile": MULTI_STAGE, "hello.txt": "hello"}
    first, _ = _build(engine, files)
    again, log = _build(engine, files)
    assert again == first
    assert log.text.count("Using cache") == 3  # COPY, RUN, COPY --from
    changed, log = _build(engine, {**files, "hello.txt": "other"})
    assert changed != first
    assert log.text.count("Using cache") == 0


def test_the_same_build_on_two_fresh_stores_gives_the_same_digest(
    engine_factory: Callable[[], Engine],
) -> None:
    busybox = shutil.which("busybox")
    assert busybox is not None
    dockerfile = (
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /data && '
        '/bin/busybox echo made > /data/file"]\nCMD ["/bin/busybox", "cat", "/data/file"]\n'
    )
    files: Files = {"Dockerfile": dockerfile, "busybox": Path(busybox).read_bytes()}
    ids = [_build(engine_factory(), files)[0] for _ in range(2)]
    assert ids[0] == ids[1]


def test_a_failing_run_stops_the_build_with_its_exit_code(
    engine_factory: Callable[[], Engine],
) -> None:
    engine = engine_factory()
    log = Log()
    with pytest.raises(BuildError, match="returned a non-zero code: 3"):
        engine.builds.build(
            _context({"Dockerfile": "FROM busybox\nRUN echo about to fail; exit 3\n"}),
            BuildRequest(),
            log,
        )
    assert "about to fail" in log.text


def test_a_secret_is_readable_in_its_step_and_absent_from_the_image(
    engine_factory: Callable[[], Engine],
) -> None:
    engine = engine_factory()
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token cat /run/secrets/token > /dev/null && "
        "echo token-len=$(wc -c < /run/secrets/token)\n"
    )
    image_id, log = _build(
        engine, {"Dockerfile": dockerfile}, secrets={"token": b"s3cret"}, tags=("sec:1",)
    )
    assert "token-len=6" in log.text
    _, check = _build(
        engine, {"Dockerfile": "FROM sec:1\nRUN test ! -e /run/secrets && echo clean\n"}
    )
    assert "clean" in check.text
    history = json.dumps(engine.images.history("sec:1"))
    assert "s3cret" not in history


def test_errors_point_at_the_dockerfile_line(engine_factory: Callable[[], Engine]) -> None:
    engine = engine_factory()
    with pytest.raises(InvalidArgument, match='Dockerfile:2: unknown instruction "RUNN"'):
        _build(engine, {"Dockerfile": "FROM busybox\nRUNN echo\n"})
    with pytest.raises(InvalidArgument, match="Dockerfile:2: COPY failed"):
        _build(engine, {"Dockerfile": "FROM busybox\nCOPY missing.txt /x\n"})


def test_cache_tmpfs_and_bind_mounts_of_run(engine_factory: Callable[[], Engine]) -> None:
    engine = engine_factory()
    # One mount type per RUN keeps each check plain.
    files: Files = {
        "Dockerfile": (
            "FROM busybox\n"
            "ARG N\n"
            "RUN --mount=type=cache,target=/cache echo run-$N >> /cache/log && "
            "echo lines=$(wc -l < /cache/log)\n"
            "RUN --mount=type=tmpfs,target=/scratch echo temp > /scratch/file\n"
            "RUN --mount=type=bind,source=data.txt,target=/in.txt cp /in.txt /copied\n"
        ),
        "data.txt": "from the context\n",
    }
    _, first = _build(engine, files, build_args={"N": "1"}, tags=("mounts:1",))
    assert "lines=1" in first.text
    _, second = _build(engine, files, build_args={"N": "2"}, tags=("mounts:2",))
    assert "lines=2" in second.text  # the cache mount outlived the first build
    _, check = _build(
        engine,
        {
            "Dockerfile": "FROM mounts:2\nRUN cat /copied && test ! -e /cache/log && "
            "test ! -e /scratch && test ! -e /in.txt && echo clean\n"
        },
    )
    assert "from the context" in check.text
    assert "clean" in check.text
    _, log = _build(engine, {**files, "data.txt": "changed\n"}, build_args={"N": "2"})
    assert log.text.count("Using cache") == 2  # the bind's content is in its step's key


def test_binds_from_a_stage_and_writable_binds_leave_nothing_behind(
    engine_factory: Callable[[], Engine],
) -> None:
    engine = engine_factory()
    files: Files = {
        "Dockerfile": (
            "FROM busybox AS tools\n"
            "RUN mkdir -p /opt/tool && echo 'from the tools stage' > /opt/tool/note\n"
            "FROM busybox\n"
            "RUN --mount=type=bind,from=tools,source=/opt/tool,target=/mnt/tool "
            "cp /mnt/tool/note /note\n"
            "RUN --mount=type=bind,source=.,target=/src,rw echo scribble > /src/data.txt && "
            "cat /src/data.txt > /seen\n"
        ),
        "data.txt": "original\n",
    }
    _build(engine, files, tags=("binds:1",))
    _, check = _build(
        engine,
        {
            "Dockerfile": "FROM binds:1\nRUN cat /note /seen && test ! -e /mnt/tool/note "
            "&& test ! -e /src && echo clean\n"
        },
    )
    assert "from the tools stage" in check.text
    assert "scribble" in check.text  # the step could write to its bind...
    assert "clean" in check.text
    _, again = _build(engine, files)
    assert again.text.count("Using cache") == 3  # ...and the context kept its content


def test_copy_of_heredoc_files(engine_factory: Callable[[], Engine]) -> None:
    engine = engine_factory()
    dockerfile = (
        "FROM busybox\n"
        "ARG WHO=world\n"
        "COPY <<EOF /etc/greeting\n"
        "hello $WHO\n"
        "EOF\n"
        "COPY --chmod=0755 <<run.sh <<notes.txt /opt/\n"
        "#!/bin/sh\n"
        "echo running\n"
        "run.sh\n"
        "some notes\n"
        "notes.txt\n"
    )
    _build(engine, {"Dockerfile": dockerfile}, tags=("heredoc:1",))
    _, check = _build(
        engine,
        {
            "Dockerfile": "FROM heredoc:1\nRUN cat /etc/greeting /opt/notes.txt && /opt/run.sh "
            "&& stat -c '%a %u' /opt/run.sh /etc/greeting\n"
        },
    )
    assert "hello world" in check.text
    assert "some notes" in check.text
    assert "running" in check.text
    assert "755 0\n644 0" in check.text
    _, same = _build(engine, {"Dockerfile": dockerfile})
    assert same.text.count("Using cache") == 2
    _, changed = _build(engine, {"Dockerfile": dockerfile}, build_args={"WHO": "moor"})
    assert changed.text.count("Using cache") == 0  # new content, and all after it


def _tar_bytes(files: Files, compress: str = "") -> bytes:
    import gzip

    raw = _context(files).getvalue()
    return gzip.compress(raw, mtime=0) if compress == "gz" else raw


def test_add_unpacks_a_local_archive_and_copy_does_not(
    engine_factory: Callable[[], Engine],
) -> None:
    engine = engine_factory()
    archive = _tar_bytes({"pkg/hello.txt": "from the archive\n"}, compress="gz")
    files: Files = {
        "Dockerfile": (
            "FROM busybox\nADD bundle.tgz /opt/\nCOPY bundle.tgz /copied/\n"
            "RUN cat /opt/pkg/hello.txt && test -f /copied/bundle.tgz && echo ok\n"
        ),
        "bundle.tgz": archive,
    }
    _, log = _build(engine, files)
    assert "from the archive" in log.text
    assert "ok" in log.text


def test_lint_warnings_are_listed_and_can_fail_the_build(
    engine_factory: Callable[[], Engine],
) -> None:
    engine = engine_factory()
    _, log = _build(engine, {"Dockerfile": "FROM busybox as base\nCMD echo hi\n"})
    assert "2 warnings found:" in log.text
    assert "JSONArgsRecommended" in log.text
    assert "FromAsCasing" in log.text
    strict = "# check=error=true\nFROM busybox\nCMD echo hi\n"
    with pytest.raises(
        InvalidArgument, match="lint violation found for rules: JSONArgsRecommended"
    ):
        _build(engine, {"Dockerfile": strict})


def test_no_cache_runs_every_step_again(engine_factory: Callable[[], Engine]) -> None:
    engine = engine_factory()
    files: Files = {"Dockerfile": MULTI_STAGE, "hello.txt": "hello"}
    _build(engine, files)
    _, log = _build(engine, files, no_cache=True)
    assert "Using cache" not in log.text


@contextlib.contextmanager
def _http_server(files: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 serving ``files``; yields its URL and the paths asked for."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            asked.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_add_of_a_url_downloads_and_checks_its_checksum(
    engine_factory: Callable[[], Engine],
) -> None:
    import hashlib

    engine = engine_factory()
    payload = b"downloaded content\n"
    good = "sha256:" + hashlib.sha256(payload).hexdigest()
    with _http_server({"/files/tool.txt": payload}) as (url, asked):
        dockerfile = f"FROM busybox\nADD --checksum={good} {url}/files/tool.txt /opt/\n"
        _build(engine, {"Dockerfile": dockerfile}, tags=("url:1",))
        _, check = _build(
            engine,
            {"Dockerfile": "FROM url:1\nRUN cat /opt/tool.txt && stat -c '%a %Y' /opt/tool.txt\n"},
        )
        assert "downloaded content" in check.text
        assert "600 1445412480" in check.text  # Docker's mode; the server's Last-Modified
        _, again = _build(engine, {"Dockerfile": dockerfile})
        assert "Using cache" in again.text
        assert asked == ["/files/tool.txt"]  # the checksum found the cache: no second fetch

        bad = "sha256:" + "0" * 64
        with pytest.raises(DockerfileError, match="Dockerfile:2: ADD failed: .* checksum mismatch"):
            _build(
                engine,
                {"Dockerfile": f"FROM busybox\nADD --checksum={bad} {url}/files/tool.txt /x\n"},
            )
        with pytest.raises(DockerfileError, match="not found"):
            _build(engine, {"Dockerfile": f"FROM busybox\nADD {url}/missing /x\n"})
