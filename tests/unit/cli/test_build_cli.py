"""``moor build`` and ``moor builder prune`` against a fake daemon (the real app around
a fake engine, on a unix socket): what is printed, -q, --iidfile, the exit status of a
failed build, build args from the environment, secrets, -o, stdin contexts."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import pytest
from click.testing import CliRunner, Result

from app_daemon import AppDaemon
from moorage.cli import build as build_cli
from moorage.cli.main import cli
from moorage.engine.builds import BuildRequest
from moorage.errors import FailedPrecondition, InvalidArgument, NotSupported

Emit = Callable[[dict[str, Any]], None]
IMAGE_ID = "sha256:" + "cd" * 32
WAIT = 10


class FakeBuilds:
    def __init__(self) -> None:
        self.requests: list[BuildRequest] = []
        self.contexts: list[bytes] = []
        self.context_dirs: list[str] = []
        self.failure: str | None = None
        self.pruned: list[dict[str, Any]] = []

    def build(
        self,
        context: BinaryIO | None,
        request: BuildRequest,
        emit: Emit,
        *,
        context_dir: str | None = None,
        pull: Any = None,
    ) -> str:
        self.requests.append(request)
        if context_dir is not None:
            self.context_dirs.append(context_dir)
        else:
            assert context is not None
            self.contexts.append(context.read())
        emit({"stream": "Step 1/2 : FROM busybox\n"})
        emit({"stream": " ---> Using cache\n"})
        emit({"stream": "Step 2/2 : RUN make\n"})
        if self.failure:
            emit({"stream": "make: *** no rule\n"})
            raise FailedPrecondition(self.failure)
        emit({"aux": {"ID": IMAGE_ID}})
        emit({"stream": "Successfully built cdcdcdcdcdcd\n"})
        for tag in request.tags:
            emit({"stream": f"Successfully tagged {tag}\n"})
        return IMAGE_ID

    def prune(self, *, all: bool = False, filters: Any = None) -> dict[str, Any]:
        self.pruned.append({"all": all, "filters": filters})
        return {"CachesDeleted": ["abc", "def"], "SpaceReclaimed": 1_500_000}


class FakeImages:
    def __init__(self) -> None:
        self.saved: list[tuple[list[str], str]] = []

    def check_exist(self, names: list[str]) -> None:
        pass

    def save(self, names: list[str], fmt: str = "docker") -> Iterator[bytes]:
        self.saved.append((names, fmt))
        yield f"{fmt} archive of {','.join(names)}".encode()


@pytest.fixture
def engine(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(
        builds=FakeBuilds(),
        images=FakeImages(),
        config=SimpleNamespace(root=str(tmp_path / "root")),
    )


@pytest.fixture
def moor(tmp_path: Path, engine: SimpleNamespace) -> Iterator[Callable[..., Result]]:
    daemon = AppDaemon(engine, tmp_path / "moor.sock")

    def run(*args: str, input: bytes | None = None) -> Result:
        return CliRunner(mix_stderr=False).invoke(
            cli, ["-H", f"unix://{daemon.path}", *args], input=input
        )

    try:
        yield run
    finally:
        daemon.close()


@pytest.fixture(autouse=True)
def client_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The context goes as a tar unless a test says otherwise (see the in-place tests)."""
    monkeypatch.setattr(build_cli, "_client_is_root", lambda: False)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN make\n")
    (context / "Makefile").write_text("all:\n")
    return context


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_plain_output_is_the_daemons_text(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path
) -> None:
    result = moor("build", "-t", "app:1", str(ctx))

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Sending build context to Docker daemon  3.072kB",  # two files, two end blocks
        "Step 1/2 : FROM busybox",
        " ---> Using cache",
        "Step 2/2 : RUN make",
        "Successfully built cdcdcdcdcdcd",
        "Successfully tagged app:1",
    ]
    request = engine.builds.requests[0]
    assert (request.dockerfile, request.tags, request.quiet) == ("Dockerfile", ("app:1",), False)
    assert _names(engine.builds.contexts[0]) == ["Dockerfile", "Makefile"]


def test_options_reach_the_daemon(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path
) -> None:
    result = moor(
        "build",
        "--target",
        "prod",
        "--label",
        "team=core",
        "--no-cache",
        "--pull",
        "--network",
        "none",
        str(ctx),
    )

    assert result.exit_code == 0, result.stderr
    request = engine.builds.requests[0]
    assert request.target == "prod"
    assert request.labels == {"team": "core"}
    assert (request.no_cache, request.pull, request.network_mode) == (True, True, "none")


def test_quiet_prints_the_id_alone(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path
) -> None:
    result = moor("build", "-q", str(ctx))

    assert result.exit_code == 0, result.stderr
    assert result.stdout == IMAGE_ID + "\n"
    assert engine.builds.requests[0].quiet


def test_a_failed_build_prints_the_error_and_exits_1(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path
) -> None:
    engine.builds.failure = "The command '/bin/sh -c make' returned a non-zero code: 2"

    result = moor("build", str(ctx))

    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == "make: *** no rule"
    assert result.stderr == "The command '/bin/sh -c make' returned a non-zero code: 2\n"


def test_a_quiet_failed_build_shows_its_output_on_stderr(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path
) -> None:
    engine.builds.failure = "it failed"

    result = moor("build", "-q", str(ctx))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Step 1/2 : FROM busybox",
        " ---> Using cache",
        "Step 2/2 : RUN make",
        "make: *** no rule",
        "it failed",
    ]


def test_iidfile_gets_the_id(moor: Callable[..., Result], ctx: Path, tmp_path: Path) -> None:
    iidfile = tmp_path / "iid"

    result = moor("build", "--iidfile", str(iidfile), str(ctx))

    assert result.exit_code == 0, result.stderr
    assert iidfile.read_text() == IMAGE_ID


def test_a_failed_build_leaves_no_stale_iidfile(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path, tmp_path: Path
) -> None:
    iidfile = tmp_path / "iid"
    iidfile.write_text("sha256:old")
    engine.builds.failure = "it failed"

    assert moor("build", "--iidfile", str(iidfile), str(ctx)).exit_code == 1
    assert not iidfile.exists()


def test_a_bare_build_arg_comes_from_the_environment(
    moor: Callable[..., Result],
    engine: SimpleNamespace,
    ctx: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FROM_ENV", "env value")
    monkeypatch.delenv("UNSET_ARG", raising=False)

    result = moor(
        "build",
        "--build-arg",
        "FROM_ENV",
        "--build-arg",
        "GIVEN=a=b",
        "--build-arg",
        "UNSET_ARG",
        str(ctx),
    )

    assert result.exit_code == 0, result.stderr
    assert engine.builds.requests[0].build_args == {"FROM_ENV": "env value", "GIVEN": "a=b"}


def test_secrets_are_read_by_the_client(
    moor: Callable[..., Result],
    engine: SimpleNamespace,
    ctx: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = tmp_path / "token.txt"
    token.write_bytes(b"s3cr3t\n")
    monkeypatch.setenv("API_KEY", "k3y")

    result = moor(
        "build",
        "--secret",
        f"id=token,src={token}",
        "--secret",
        "id=key,env=API_KEY",
        "--secret",
        "type=env,id=API_KEY",
        str(ctx),
    )

    assert result.exit_code == 0, result.stderr
    assert engine.builds.requests[0].secrets == {
        "token": b"s3cr3t\n",
        "key": b"k3y",
        "API_KEY": b"k3y",
    }
    assert b"s3cr3t" not in engine.builds.contexts[0]


def test_output_saves_the_image(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "image.tar"

    result = moor("build", "-t", "app:1", "-o", f"type=oci,dest={dest}", str(ctx))

    assert result.exit_code == 0, result.stderr
    assert dest.read_bytes() == b"oci archive of app:1"
    assert engine.images.saved == [(["app:1"], "oci")]


def test_output_of_an_untagged_image_names_it_by_id(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "image.tar"

    assert moor("build", "-o", f"type=docker,dest={dest}", str(ctx)).exit_code == 0
    assert engine.images.saved == [([IMAGE_ID], "docker")]


def test_a_dockerfile_from_stdin(
    moor: Callable[..., Result], engine: SimpleNamespace, ctx: Path
) -> None:
    result = moor("build", "-f", "-", str(ctx), input=b"FROM scratch\n")

    assert result.exit_code == 0, result.stderr
    dockerfile = engine.builds.requests[0].dockerfile
    assert dockerfile.startswith(".dockerfile.")
    assert dockerfile in _names(engine.builds.contexts[0])


def test_a_context_from_stdin(moor: Callable[..., Result], engine: SimpleNamespace) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("sub/Dockerfile")
        info.size = 13
        tar.addfile(info, io.BytesIO(b"FROM scratch\n"))

    result = moor("build", "-f", "sub/Dockerfile", "-", input=buffer.getvalue())

    assert result.exit_code == 0, result.stderr
    assert engine.builds.requests[0].dockerfile == "sub/Dockerfile"
    assert engine.builds.contexts[0] == buffer.getvalue()


def test_a_dockerfile_alone_on_stdin(moor: Callable[..., Result], engine: SimpleNamespace) -> None:
    result = moor("build", "-", input=b"FROM scratch\n")

    assert result.exit_code == 0, result.stderr
    assert _names(engine.builds.contexts[0]) == ["Dockerfile"]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["--platform", "linux/s390x"], NotSupported, "cannot build for platform linux/s390x"),
        (["-o", "type=local,dest=out"], NotSupported, "type 'local' is not supported"),
        (["-o", "out"], NotSupported, "to a directory is not supported"),
        (["-o", "type=docker"], InvalidArgument, "dest=FILE is required"),
        (["--secret", "id=x,src=/nonexistent"], InvalidArgument, "cannot read secret x"),
        (["--secret", "id=x,kind=file"], InvalidArgument, "unexpected key 'kind'"),
        (["-t", "Bad Name"], InvalidArgument, "invalid reference format"),
        (["-f", "-", "-"], InvalidArgument, "stdin for both build context and dockerfile"),
    ],
)
def test_refused_before_anything_is_sent(
    moor: Callable[..., Result],
    engine: SimpleNamespace,
    ctx: Path,
    args: list[str],
    error: type,
    message: str,
) -> None:
    if args[-1] != "-":
        args = [*args, str(ctx)]

    result = moor("build", *args)

    assert isinstance(result.exception, error)
    assert message in str(result.exception)
    assert engine.builds.requests == []


def test_this_machines_platform_is_accepted() -> None:
    from moorage.oci.platform import host_platform

    build_cli.check_platform(str(host_platform()))


def test_builder_prune(moor: Callable[..., Result], engine: SimpleNamespace) -> None:
    result = moor("builder", "prune", "-a", "-f", "--filter", "until=24h")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Deleted build cache objects:",
        "abc",
        "def",
        "",
        "Total reclaimed space: 1.5MB",
    ]
    assert engine.builds.pruned == [{"all": True, "filters": {"until": ["24h"]}}]


def test_builder_prune_asks_first(moor: Callable[..., Result], engine: SimpleNamespace) -> None:
    result = moor("builder", "prune", input=b"n\n")

    assert result.exit_code == 1
    assert "WARNING! This will remove all dangling build cache." in result.stdout
    assert engine.builds.pruned == []


def test_a_secret_without_a_source_is_the_variable_or_the_file_of_its_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "npmrc").write_bytes(b"file")
    monkeypatch.chdir(tmp_path)

    assert build_cli.secret("id=npmrc", {}) == ("npmrc", b"file")
    assert build_cli.secret("id=npmrc", {"npmrc": "var"}) == ("npmrc", b"var")
    assert build_cli.secret("type=env,id=GONE", {}) is None


def test_running_a_container_does_not_import_the_builder() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from moorage.cli.main import cli\n"
        "CliRunner().invoke(cli, ['run', '--help'])\n"
        "print(any(m.startswith(('moorage.cli.build', 'moorage.api.build', 'moorage.build'))"
        " for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_a_root_client_has_the_daemon_read_the_context_in_place(
    moor: Callable[..., Result],
    engine: SimpleNamespace,
    ctx: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_cli, "_client_is_root", lambda: True)

    result = moor("build", "-t", "app:1", str(ctx))

    assert result.exit_code == 0, result.stderr
    assert engine.builds.context_dirs == [str(ctx.resolve())]
    assert engine.builds.contexts == []
    assert "Sending build context" not in result.stdout
    assert engine.builds.requests[0].dockerfile == "Dockerfile"


def test_a_declined_context_in_place_is_sent_as_a_tar(
    moor: Callable[..., Result],
    engine: SimpleNamespace,
    ctx: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moorage.sys import procfs

    monkeypatch.setattr(build_cli, "_client_is_root", lambda: True)
    monkeypatch.setattr(
        procfs, "peer_credentials", lambda sock: procfs.PeerCredentials(1, 1000, 1000)
    )

    result = moor("build", str(ctx))

    assert result.exit_code == 0, result.stderr
    assert engine.builds.context_dirs == []
    assert _names(engine.builds.contexts[0]) == ["Dockerfile", "Makefile"]


def test_a_dockerfile_outside_the_context_goes_in_a_tar(
    moor: Callable[..., Result],
    engine: SimpleNamespace,
    ctx: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_cli, "_client_is_root", lambda: True)
    outside = tmp_path / "other.Dockerfile"
    outside.write_text("FROM busybox\n")

    result = moor("build", "-f", str(outside), str(ctx))

    assert result.exit_code == 0, result.stderr
    assert engine.builds.context_dirs == []
    assert any(n.startswith(".dockerfile.") for n in _names(engine.builds.contexts[0]))
