"""POST /images/create?fromImage, POST /images/{name}/push and POST /auth, served by the
real app around a fake engine: Docker's progress messages, errors as a status before
the first message and as a last line after it, credentials from X-Registry-Auth."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app_daemon import AppDaemon
from moorage.api.client import Client
from moorage.api.docker.distribution import progress_bar, pull_reference
from moorage.engine.events import EventBus
from moorage.errors import InvalidArgument, NotFound, PermissionDenied
from moorage.oci.reference import parse_reference
from moorage.registry.client.credentials import Credentials
from moorage.registry.client.errors import RegistryNotFound, RegistryUnavailable, Unauthorized
from moorage.registry.client.progress import Progress

L1 = "sha256:" + "1" * 64
L2 = "sha256:" + "2" * 64
ROOT = "sha256:" + "f" * 64
WAIT = 10


class FakeImages:
    def __init__(self) -> None:
        self.pulls: list[dict[str, Any]] = []
        self.fail: BaseException | None = None
        self.fail_after_first = False
        self.transfers = self
        self.logins: list[tuple[str, Credentials]] = []
        self.pushed: list[Any] = []

    async def pull(self, reference: str, **options: Any) -> Any:
        self.pulls.append({"reference": reference, **options})
        if self.fail is not None and not self.fail_after_first:
            raise self.fail
        progress = options["progress"]
        progress(Progress("resolved", ROOT))
        if self.fail is not None:
            raise self.fail
        progress(Progress("exists", L1, 0, 10))
        progress(Progress("waiting", L2, 0, 2000))
        progress(Progress("downloading", L2, 1000, 2000))
        progress(Progress("verifying", L2, 2000, 2000))
        progress(Progress("downloaded", L2, 2000, 2000))
        progress(Progress("complete", L2))
        return SimpleNamespace(digest=ROOT, updated=True)

    def push_plan(self, name: str, tag: str | None) -> list[Any]:
        if name.startswith("missing"):
            raise NotFound(f"an image does not exist locally with the tag: {name}")
        return [SimpleNamespace(reference=parse_reference(f"{name}:{tag or 'latest'}"))]

    async def push(self, item: Any, **options: Any) -> Any:
        self.pushed.append((item, options["credentials"]))
        if self.fail is not None:
            raise self.fail
        progress = options["progress"]
        progress(Progress("waiting", L1, 0, 10))
        progress(Progress("waiting", L2, 0, 20))
        progress(Progress("exists", L1, 10, 10))
        progress(Progress("pushing", L2, 20, 20))
        progress(Progress("pushed", L2, 20, 20))
        progress(Progress("mounted", L1, 0, 10, "library/base"))
        return SimpleNamespace(digest=ROOT, size=527)

    async def login(self, server: str, credentials: Credentials) -> str:
        self.logins.append((server, credentials))
        if credentials.password != "right":
            raise Unauthorized(f"login to {server}: unauthorized: incorrect username or password")
        return server


@pytest.fixture
def images() -> FakeImages:
    return FakeImages()


@pytest.fixture
def events() -> EventBus:
    return EventBus()


@pytest.fixture
def client(tmp_path: Path, images: FakeImages, events: EventBus) -> Iterator[Client]:
    daemon = AppDaemon(SimpleNamespace(images=images, events=events), tmp_path / "moor.sock")
    try:
        yield Client(daemon.path, timeout=WAIT)
    finally:
        daemon.close()


def auth_header(**data: str) -> dict[str, str]:
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(data).encode()).decode()}


def test_pull_streams_docker_s_messages(client: Client, images: FakeImages) -> None:
    response = client.request(
        "POST",
        "/images/create",
        params={"fromImage": "localhost:5000/team/app", "tag": "1", "platform": "linux/arm64"},
        headers=auth_header(username="me", password="pw"),
    )
    messages = list(response.iter_json_lines())
    assert messages == [
        {"status": "Pulling from team/app", "id": "1"},
        {"status": "Already exists", "progressDetail": {}, "id": "111111111111"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "222222222222"},
        {
            "status": "Downloading",
            "progressDetail": {"current": 1000, "total": 2000},
            "progress": progress_bar(1000, 2000),
            "id": "222222222222",
        },
        {"status": "Verifying Checksum", "progressDetail": {}, "id": "222222222222"},
        {"status": "Download complete", "progressDetail": {}, "id": "222222222222"},
        {"status": "Pull complete", "progressDetail": {}, "id": "222222222222"},
        {"status": f"Digest: {ROOT}"},
        {"status": "Status: Downloaded newer image for localhost:5000/team/app:1"},
    ]
    [pull] = images.pulls
    assert pull["reference"] == "localhost:5000/team/app:1"
    assert pull["platform"] == "linux/arm64"
    assert pull["credentials"] == Credentials("me", "pw")


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (RegistryNotFound("localhost:5000/x:1: manifest unknown"), NotFound),
        (Unauthorized("localhost:5000: unauthorized"), PermissionDenied),
    ],
)
def test_a_failure_before_the_first_message_is_a_status(
    client: Client, images: FakeImages, error: Exception, cls: type[Exception]
) -> None:
    images.fail = error
    with pytest.raises(cls, match=str(error)):
        client.request("POST", "/images/create", params={"fromImage": "localhost:5000/x"})


def test_a_failure_after_it_is_the_last_line(client: Client, images: FakeImages) -> None:
    images.fail = RegistryUnavailable("localhost:5000: connection refused")
    images.fail_after_first = True
    response = client.request("POST", "/images/create", params={"fromImage": "busybox"})
    assert response.status == 200
    messages = list(response.iter_json_lines())
    assert messages[-1] == {
        "errorDetail": {"message": "localhost:5000: connection refused"},
        "error": "localhost:5000: connection refused",
    }


def test_a_bad_name_is_400(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        client.request("POST", "/images/create", params={"fromImage": "Bad/../Name"})


@pytest.mark.parametrize(
    ("from_image", "tag", "want"),
    [
        ("busybox", "", "docker.io/library/busybox:latest"),
        ("busybox", "1.36", "docker.io/library/busybox:1.36"),
        ("busybox:1.35", "", "docker.io/library/busybox:1.35"),
        ("busybox:1.35", "1.36", "docker.io/library/busybox:1.36"),
        ("host:5000/a", L1, f"host:5000/a@{L1}"),
    ],
)
def test_pull_reference(from_image: str, tag: str, want: str) -> None:
    assert str(pull_reference(from_image, tag)) == want


def test_push_streams_docker_s_messages(client: Client, images: FakeImages) -> None:
    response = client.request(
        "POST",
        "/images/localhost:5000/team/app/push",
        params={"tag": "2"},
        headers=auth_header(identitytoken="idt"),
    )
    messages = list(response.iter_json_lines())
    assert messages[0] == {"status": "The push refers to repository [localhost:5000/team/app]"}
    statuses = [(m.get("id"), m.get("status")) for m in messages[1:-2]]
    assert statuses == [
        ("111111111111", "Preparing"),
        ("222222222222", "Preparing"),
        ("111111111111", "Layer already exists"),
        ("222222222222", "Pushing"),
        ("222222222222", "Pushed"),
        ("111111111111", "Mounted from library/base"),
    ]
    assert messages[-2] == {"status": f"2: digest: {ROOT} size: 527"}
    assert messages[-1] == {"progressDetail": {}, "aux": {"Tag": "2", "Digest": ROOT, "Size": 527}}
    assert images.pushed[0][1] == Credentials(identity_token="idt")


def test_pull_and_push_are_image_events_named_by_reference(
    client: Client, events: EventBus
) -> None:
    client.request("POST", "/images/create", params={"fromImage": "busybox"}).read()
    client.request("POST", "/images/localhost:5000/team/app/push", params={"tag": "2"}).read()

    assert [(e["Type"], e["Action"], e["Actor"]) for e in events.history()] == [
        ("image", "pull", {"ID": "busybox:latest", "Attributes": {"name": "busybox"}}),
        (
            "image",
            "push",
            {"ID": "localhost:5000/team/app:2", "Attributes": {"name": "localhost:5000/team/app"}},
        ),
    ]


def test_pushing_a_missing_image_is_404(client: Client) -> None:
    with pytest.raises(NotFound, match="does not exist locally"):
        client.request("POST", "/images/missing/app/push", params={"tag": "1"})


def test_a_push_refused_by_the_registry_ends_with_an_error_line(
    client: Client, images: FakeImages
) -> None:
    images.fail = Unauthorized("localhost:5000/app:1: unauthorized: authentication required")
    messages = list(
        client.request(
            "POST", "/images/localhost:5000/app/push", params={"tag": "1"}
        ).iter_json_lines()
    )
    assert messages[0]["status"].startswith("The push refers to repository")
    assert messages[-1]["error"] == "localhost:5000/app:1: unauthorized: authentication required"


def test_auth(client: Client, images: FakeImages) -> None:
    body = {"username": "me", "password": "right", "serveraddress": "localhost:5000"}
    answer = client.request("POST", "/auth", json_body=body).json()
    assert answer == {"Status": "Login Succeeded", "IdentityToken": ""}
    assert images.logins == [("localhost:5000", Credentials("me", "right"))]
    with pytest.raises(PermissionDenied, match="incorrect username or password"):
        client.request("POST", "/auth", json_body={**body, "password": "wrong"})
    with pytest.raises(InvalidArgument, match="no username"):
        client.request("POST", "/auth", json_body={"serveraddress": "localhost:5000"})


def test_progress_bar() -> None:
    assert progress_bar(0, 100, width=10) == "[>         ]       0B/100B"
    assert progress_bar(50_000, 100_000, width=10) == "[====>     ]     50kB/100kB"
    assert progress_bar(2_217_154, 2_217_154, width=10) == "[==========]  2.217MB/2.217MB"
