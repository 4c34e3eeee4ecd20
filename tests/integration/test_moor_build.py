"""`moor build` as a user runs it, against a private daemon: a context with a
.dockerignore, tags, the cache on a rebuild, -q and --iidfile, --target, build args,
errors that name the Dockerfile line, `moor builder prune`; and the docker CLI's
classic builder (DOCKER_BUILDKIT=0) against the same daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import Daemon, running_daemon

pytestmark = pytest.mark.root

DOCKERFILE = """\
ARG GREETING=hello
FROM busybox AS base
ARG GREETING
RUN echo "$GREETING from the base" > /greeting
FROM base AS app
WORKDIR /app
COPY . .
RUN ls /app | sort > /app/listing
CMD ["cat", "/greeting", "/app/listing"]
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("build") / "moor", busybox=True) as d:
        yield d


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "keep.txt").write_text("kept\n")
    (ctx / "secret.key").write_text("never sent\n")
    (ctx / ".dockerignore").write_text("*.key\n")
    return ctx


def _out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def test_build_tag_run_and_rebuild_from_the_cache(daemon: Daemon, context: Path) -> None:
    first = _out(daemon.moor("build", "-t", "cli-app:1", str(context)))
    assert "Successfully tagged cli-app:1" in first
    out = _out(daemon.moor("run", "--rm", "cli-app:1"))
    assert out.splitlines()[0] == "hello from the base"
    listing = out.splitlines()[1:]
    assert "keep.txt" in listing
    assert "secret.key" not in listing  # .dockerignore
    again = _out(daemon.moor("build", "-t", "cli-app:1", str(context)))
    assert again.count("Using cache") >= 3
    daemon.moor("rmi", "cli-app:1")


def test_quiet_iidfile_target_and_build_args(daemon: Daemon, context: Path, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    quiet = _out(
        daemon.moor(
            "build", "-q", "--iidfile", str(iid), "--target", "base",
            "--build-arg", "GREETING=bonjour", "-t", "cli-base:1", str(context),
        )
    ).strip()  # fmt: skip
    assert quiet.startswith("sha256:")
    assert iid.read_text().strip() == quiet
    assert _out(daemon.moor("run", "--rm", "cli-base:1", "cat", "/greeting")) == (
        "bonjour from the base\n"
    )
    assert daemon.moor("run", "--rm", "cli-base:1", "test", "-e", "/app", check=False).returncode
    daemon.moor("rmi", "cli-base:1")


def test_errors_name_the_dockerfile_line_and_exit_1(daemon: Daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "bad"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUNN echo\n")
    bad = daemon.moor("build", str(ctx), check=False)
    assert bad.returncode == 1
    assert b'Dockerfile:2: unknown instruction "RUNN"' in bad.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo failing; exit 7\n")
    failing = daemon.moor("build", str(ctx), check=False)
    assert failing.returncode == 1
    assert b"failing" in failing.stdout
    assert b"returned a non-zero code: 7" in failing.stderr


def test_builder_prune_empties_the_cache(daemon: Daemon, context: Path) -> None:
    daemon.moor("build", "-t", "cli-prune:1", str(context))
    daemon.moor("rmi", "cli-prune:1")
    pruned = _out(daemon.moor("builder", "prune", "-f"))
    assert "Total" in pruned or "reclaimed" in pruned.lower()
    rebuilt = _out(daemon.moor("build", str(context)))
    assert "Using cache" not in rebuilt


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_the_docker_cli_builds_with_the_classic_builder(daemon: Daemon, context: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_BUILDKIT": "0"}
    result = subprocess.run(
        ["docker", "build", "-t", "docker-built:1", str(context)],
        env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert b"Successfully tagged docker-built:1" in result.stdout
    run = subprocess.run(
        ["docker", "run", "--rm", "docker-built:1"], env=env, capture_output=True, timeout=120
    )
    assert run.stdout.decode().splitlines()[0] == "hello from the base"
    daemon.moor("rmi", "docker-built:1")


# --- the context read in place (moor as root) -------------------------------------------


def test_a_context_in_place_keeps_dockerignore_and_owners(daemon: Daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "inplace"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (ctx / "src" / "private.key").write_text("never in the image\n")
    (ctx / ".dockerignore").write_text("**/*.key\n")
    os.chown(ctx / "src" / "main.c", 1234, 1234)  # a user's file: root's in the image
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "COPY src/ /src/\n"
        "RUN --mount=type=bind,source=src,target=/mnt ls /mnt > /bound.txt\n"
    )
    out = _out(daemon.moor("build", "-t", "inplace:1", str(ctx)))
    assert "Sending build context" not in out  # nothing was packed: read in place

    listing = _out(daemon.moor("run", "--rm", "inplace:1", "sh", "-c",
                               "ls /src; cat /bound.txt; stat -c '%u:%g' /src/main.c"))  # fmt: skip
    assert listing.split() == ["main.c", "main.c", "0:0"]
    assert (ctx / "src" / "private.key").exists()  # the build only read the directory
    daemon.moor("rmi", "inplace:1")


def test_a_context_in_place_and_a_sent_one_share_the_cache(daemon: Daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "shared"
    ctx.mkdir()
    (ctx / "app.txt").write_text("same content either way\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY app.txt /app.txt\n")
    daemon.moor("build", "-t", "shared:1", str(ctx))  # in place

    sent = daemon.moor("build", "-t", "shared:2", "-", input=_tar_of(ctx))

    assert "Using cache" in _out(sent)
    daemon.moor("rmi", "shared:1", "shared:2")


def _tar_of(directory: Path) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(directory.iterdir()):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.uid = info.gid = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return buffer.getvalue()


def test_progress_tty_shows_the_steps(daemon: Daemon, context: Path) -> None:
    daemon.moor("build", "-t", "tty-app:1", str(context))

    shown = _out(daemon.moor("build", "--progress", "tty", "-t", "tty-app:1", str(context)))

    assert "[+] Built" in shown
    assert "=> CACHED [" in shown
    assert "RUN ls /app" in shown
    assert "Successfully tagged tty-app:1" in shown
    daemon.moor("rmi", "tty-app:1")
