"""POST /build and its cache, served on a unix socket by the real app around a fake
engine: the query, compressed contexts, messages streamed as the build emits them,
errors (as a status before the first message, as a last line after), -q, the
secrets header, BuildKit refused, prune."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import json
import lzma
import os
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import pytest
import zstandard

from app_daemon import AppDaemon
from moorage.api.build_context import encode_secrets
from moorage.api.client import Client
from moorage.api.docker.build import _Pipe
from moorage.engine.builds import BuildRequest
from moorage.errors import FailedPrecondition, InvalidArgument, NotSupported, Unavailable

Emit = Callable[[dict[str, Any]], None]
IMAGE_ID = "sha256:" + "ab" * 32
WAIT = 10


class FakeBuilds:
    """Records each build's request and context; ``script`` decides what it emits."""

    def __init__(self) -> None:
        self.requests: list[BuildRequest] = []
        self.contexts: list[bytes] = []
        self.context_dirs: list[str] = []
        self.script: Callable[[Emit], str] = self._default
        self.pruned: list[dict[str, Any]] = []

    @staticmethod
    def _default(emit: Emit) -> str:
        emit({"stream": "Step 1/1 : FROM scratch\n"})
        emit({"aux": {"ID": IMAGE_ID}})
        emit({"stream": "Successfully built abababababab\n"})
        return IMAGE_ID

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
        return self.script(emit)

    def prune(self, *, all: bool = False, filters: Any = None) -> dict[str, Any]:
        self.pruned.append({"all": all, "filters": filters})
        return {"CachesDeleted": ["k1", "k2"], "SpaceReclaimed": 2048}


@pytest.fixture
def builds() -> FakeBuilds:
    return FakeBuilds()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def client(tmp_path: Path, builds: FakeBuilds, root: Path) -> Iterator[Client]:
    engine = SimpleNamespace(builds=builds, config=SimpleNamespace(root=str(root)))
    daemon = AppDaemon(engine, tmp_path / "moor.sock")
    try:
        yield Client(daemon.path, timeout=WAIT)
    finally:
        daemon.close()


def _tar(files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (files or {"Dockerfile": b"FROM scratch\n"}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _build(client: Client, body: bytes | None = None, **params: Any) -> list[dict[str, Any]]:
    headers = params.pop("headers", None)
    response = client.request(
        "POST", "/build", params=params, body=_tar() if body is None else body, headers=headers
    )
    assert response.status == 200
    return list(response.iter_json_lines())


# --- the request --------------------------------------------------------------------------


def test_query_parameters_become_the_build_request(client: Client, builds: FakeBuilds) -> None:
    _build(
        client,
        dockerfile="build/app.Dockerfile",
        t=["app:1", "app:1", "docker.io/library/app:1", "registry.local/app"],
        target="prod",
        buildargs={"A": "1", "B": None},
        labels={"team": "core"},
        nocache=True,
        pull=True,
        q=False,
        platform="linux/amd64",
        networkmode="host",
        # accepted and ignored, as dockerd's classic builder makes nothing of them here
        rm=True,
        forcerm=True,
        cachefrom=["app:0"],
        shmsize=67108864,
        memory=0,
        cpushares=0,
        ulimits="[]",
        extrahosts="h:1.2.3.4",
        version="1",
    )

    assert builds.requests == [
        BuildRequest(
            dockerfile="build/app.Dockerfile",
            tags=("app:1", "registry.local/app"),
            target="prod",
            build_args={"A": "1", "B": None},
            labels={"team": "core"},
            no_cache=True,
            pull=True,
            platform="linux/amd64",
            network_mode="host",
            quiet=False,
        )
    ]


def test_no_parameters_give_the_defaults(client: Client, builds: FakeBuilds) -> None:
    _build(client)
    assert builds.requests == [BuildRequest()]


def test_null_maps_are_empty(client: Client, builds: FakeBuilds) -> None:
    _build(client, buildargs="null", labels="null")
    assert builds.requests == [BuildRequest()]


def test_bridge_is_the_default_network(client: Client, builds: FakeBuilds) -> None:
    _build(client, networkmode="bridge")
    assert builds.requests[0].network_mode == "default"


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"version": "2"}, NotSupported, r"BuildKit is not supported; use the classic builder"),
        ({"version": "3"}, InvalidArgument, "invalid builder version: 3"),
        ({"remote": "https://x/ctx.tar"}, NotSupported, "remote build contexts are not supp"),
        ({"squash": True}, NotSupported, "squash is not supported"),
        ({"networkmode": "container:web"}, NotSupported, "network mode 'container:web'"),
        ({"buildargs": "[1]"}, InvalidArgument, r"invalid buildargs: \[1\]"),
        ({"labels": '{"a": null}'}, InvalidArgument, "invalid labels"),
        ({"t": "Bad Name"}, InvalidArgument, "invalid reference format"),
        ({"t": "app@sha256:" + "0" * 64}, InvalidArgument, "cannot contain a digest"),
    ],
)
def test_refusals_are_statuses(
    client: Client, builds: FakeBuilds, params: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        client.request("POST", "/build", params=params, body=_tar())
    assert builds.requests == []


@pytest.mark.parametrize(
    "compress",
    [
        gzip.compress,
        bz2.compress,
        lzma.compress,
        zstandard.ZstdCompressor().compress,
        lambda data: data,
    ],
    ids=["gzip", "bzip2", "xz", "zstd", "plain"],
)
def test_the_context_reaches_the_build_decompressed(
    client: Client, builds: FakeBuilds, root: Path, compress: Callable[[bytes], bytes]
) -> None:
    context = _tar({"Dockerfile": b"FROM scratch\n", "big": os.urandom(1_500_000)})

    _build(client, io.BytesIO(compress(context)).read())

    assert builds.contexts == [context]
    assert os.listdir(root / "staging") == []  # the spool is gone with the build


def test_a_streamed_body_is_taken(client: Client, builds: FakeBuilds) -> None:
    context = _tar({"Dockerfile": b"FROM scratch\n", "a": b"x" * 100_000})
    response = client.request("POST", "/build", body=io.BytesIO(gzip.compress(context)))
    list(response.iter_json_lines())
    assert builds.contexts == [context]


def test_a_corrupt_context_is_refused_before_the_build(client: Client, builds: FakeBuilds) -> None:
    cut = gzip.compress(_tar())[:-12]
    with pytest.raises(InvalidArgument, match="invalid build context: the gzip stream"):
        client.request("POST", "/build", body=cut)
    assert builds.requests == []


def test_secrets_come_from_the_extension_header(client: Client, builds: FakeBuilds) -> None:
    headers = {"X-Moorage-Build-Secrets": encode_secrets({"token": b"t0k3n"})}
    _build(client, headers=headers)
    assert builds.requests[0].secrets == {"token": b"t0k3n"}


def test_a_malformed_secrets_header_is_refused(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="invalid X-Moorage-Build-Secrets header"):
        client.request("POST", "/build", body=_tar(), headers={"X-Moorage-Build-Secrets": "%%%"})


# --- the answer ---------------------------------------------------------------------------


def test_messages_come_in_order(client: Client, builds: FakeBuilds) -> None:
    def script(emit: Emit) -> str:
        for n in range(2000):
            emit({"stream": f"line {n}\n"})
        emit({"aux": {"ID": IMAGE_ID}})
        return IMAGE_ID

    builds.script = script
    messages = _build(client)

    assert messages[:-1] == [{"stream": f"line {n}\n"} for n in range(2000)]
    assert messages[-1] == {"aux": {"ID": IMAGE_ID}}


def test_messages_are_sent_as_they_are_emitted(client: Client, builds: FakeBuilds) -> None:
    release = threading.Event()

    def script(emit: Emit) -> str:
        emit({"stream": "Step 1/2 : FROM scratch\n"})
        assert release.wait(WAIT), "the first message never reached the client"
        emit({"stream": "Step 2/2 : LABEL a=b\n"})
        return IMAGE_ID

    builds.script = script
    response = client.request("POST", "/build", body=_tar())
    lines = response.iter_json_lines()
    assert next(lines) == {"stream": "Step 1/2 : FROM scratch\n"}
    release.set()
    assert list(lines) == [{"stream": "Step 2/2 : LABEL a=b\n"}, {"aux": {"ID": IMAGE_ID}}]


def test_a_failure_after_the_first_message_is_the_last_line(
    client: Client, builds: FakeBuilds
) -> None:
    message = "The command '/bin/sh -c false' returned a non-zero code: 1"

    def script(emit: Emit) -> str:
        emit({"stream": "Step 1/1 : RUN false\n"})
        raise FailedPrecondition(message)

    builds.script = script
    messages = _build(client)

    assert messages == [
        {"stream": "Step 1/1 : RUN false\n"},
        {"errorDetail": {"message": message}, "error": message},
    ]


def test_a_failure_before_any_message_is_a_status(client: Client, builds: FakeBuilds) -> None:
    def script(emit: Emit) -> str:
        raise InvalidArgument("Dockerfile:1: unknown instruction: FORM")

    builds.script = script
    with pytest.raises(InvalidArgument, match="unknown instruction: FORM"):
        client.request("POST", "/build", body=_tar())


def test_quiet_sends_the_id_alone(client: Client, builds: FakeBuilds) -> None:
    messages = _build(client, q=True)
    assert builds.requests[0].quiet
    assert messages == [{"aux": {"ID": IMAGE_ID}}, {"stream": IMAGE_ID + "\n"}]


def test_quiet_sends_what_it_held_back_on_a_failure(client: Client, builds: FakeBuilds) -> None:
    def script(emit: Emit) -> str:
        emit({"stream": "Step 1/1 : RUN false\n"})
        raise FailedPrecondition("it failed")

    builds.script = script
    messages = _build(client, q=True)

    assert messages == [
        {"stream": "Step 1/1 : RUN false\n"},
        {"errorDetail": {"message": "it failed"}, "error": "it failed"},
    ]


def test_the_id_is_sent_when_the_build_does_not_say_it(client: Client, builds: FakeBuilds) -> None:
    builds.script = lambda emit: IMAGE_ID
    assert _build(client) == [{"aux": {"ID": IMAGE_ID}}]


def test_a_client_that_goes_away_stops_the_build(client: Client, builds: FakeBuilds) -> None:
    stopped: list[BaseException] = []
    done = threading.Event()

    def script(emit: Emit) -> str:
        try:
            for n in range(1_000_000):
                emit({"stream": f"{n} " + "x" * 1000 + "\n"})
        except Unavailable as exc:
            stopped.append(exc)
            raise
        finally:
            done.set()
        return IMAGE_ID

    builds.script = script
    response = client.request("POST", "/build", body=_tar())
    response.raw.readline()
    response.close()

    assert done.wait(WAIT)
    assert [str(e) for e in stopped] == ["the build's client went away"]


def test_the_pipe_holds_the_producer_back() -> None:
    async def run() -> tuple[list[bytes], int]:
        pipe = _Pipe(asyncio.get_running_loop(), limit=3)
        most = 0

        def produce() -> None:
            for n in range(20):
                pipe.put(b"%d" % n)
            pipe.finish()

        producer = asyncio.ensure_future(asyncio.to_thread(produce))
        got: list[bytes] = []
        async for batch in pipe.batches():
            most = max(most, len(batch))
            got += [line for line, _ in batch]
            await asyncio.sleep(0.001)
        await producer
        return got, most

    got, most = asyncio.run(run())
    assert got == [b"%d" % n for n in range(20)]
    assert most <= 3


# --- the cache and BuildKit -----------------------------------------------------------------


def test_prune_passes_all_and_filters(client: Client, builds: FakeBuilds) -> None:
    result = client.request(
        "POST", "/build/prune", params={"all": True, "filters": {"until": ["24h"]}}
    ).json()

    assert result == {"CachesDeleted": ["k1", "k2"], "SpaceReclaimed": 2048}
    assert builds.pruned == [{"all": True, "filters": {"until": ["24h"]}}]


def test_prune_with_a_space_to_keep_is_refused(client: Client, builds: FakeBuilds) -> None:
    with pytest.raises(NotSupported, match="keep-storage is not supported"):
        client.request("POST", "/build/prune", params={"keep-storage": 1000})
    assert builds.pruned == []


@pytest.mark.parametrize("path", ["/session", "/grpc"])
def test_buildkit_sessions_are_refused(client: Client, path: str) -> None:
    with pytest.raises(NotSupported, match="BuildKit sessions are not supported"):
        client.request("POST", path)


def test_the_error_line_is_json_docker_reads(client: Client, builds: FakeBuilds) -> None:
    def script(emit: Emit) -> str:
        emit({"stream": "x\n"})
        raise FailedPrecondition('quote " and newline\n')

    builds.script = script
    raw = client.request("POST", "/build", body=_tar()).read()
    last = raw.rstrip(b"\r\n").split(b"\r\n")[-1]
    assert json.loads(last)["error"] == 'quote " and newline\n'


# --- a context in place ---------------------------------------------------------------


def test_a_root_client_in_our_mount_namespace_builds_in_place(
    client: Client, builds: FakeBuilds, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the client of this test is not root")
    context = tmp_path / "ctx"
    context.mkdir()

    _build(client, body=b"", headers={"X-Moorage-Context-Dir": str(context)})

    assert builds.context_dirs == [str(context)]
    assert builds.contexts == []


def test_a_context_in_place_is_declined_for_a_client_that_is_not_root(
    client: Client, builds: FakeBuilds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moorage.sys import procfs

    monkeypatch.setattr(
        procfs, "peer_credentials", lambda sock: procfs.PeerCredentials(1, 1000, 1000)
    )

    with pytest.raises(
        NotSupported, match="build context in place declined: the client is not root"
    ):
        client.request("POST", "/build", body=b"", headers={"X-Moorage-Context-Dir": str(tmp_path)})
    assert builds.requests == []


def test_a_context_in_place_must_be_an_absolute_directory(
    client: Client, builds: FakeBuilds, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moorage.sys import procfs

    monkeypatch.setattr(
        procfs, "peer_credentials", lambda sock: procfs.PeerCredentials(os.getpid(), 0, 0)
    )

    with pytest.raises(InvalidArgument, match="build context relative/dir: not an absolute path"):
        client.request(
            "POST", "/build", body=b"", headers={"X-Moorage-Context-Dir": "relative/dir"}
        )
    assert builds.requests == []
