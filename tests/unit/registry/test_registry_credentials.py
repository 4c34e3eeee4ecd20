"""The credentials file: docker's config.json shape, written atomically with mode 0600,
read with docker's own file as a fallback."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from moorage.errors import InvalidArgument
from moorage.registry.client.credentials import (
    Credentials,
    CredentialStore,
    default_path,
    docker_path,
)


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    return CredentialStore(tmp_path / "moor" / "config.json", fallback=tmp_path / "docker.json")


def test_paths_follow_the_environment(tmp_path: Path) -> None:
    assert default_path({"MOOR_CONFIG": "/x"}) == Path("/x/config.json")
    assert default_path({}) == Path.home() / ".moor" / "config.json"
    assert docker_path({"DOCKER_CONFIG": "/d"}) == Path("/d/config.json")
    assert docker_path({}) == Path.home() / ".docker" / "config.json"


def test_store_writes_docker_s_shape_with_mode_0600(store: CredentialStore) -> None:
    store.store("localhost:5000", Credentials("me", "pa:ss"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    data = json.loads(store.path.read_text())
    assert data == {"auths": {"localhost:5000": {"auth": auth("me", "pa:ss")}}}
    assert store.get("http://localhost:5000/v2/") == Credentials("me", "pa:ss")


def test_docker_hub_is_filed_under_docker_s_key(store: CredentialStore) -> None:
    store.store("docker.io", Credentials("me", "pw", identity_token="idt"))
    data = json.loads(store.path.read_text())
    assert data["auths"]["https://index.docker.io/v1/"] == {
        "auth": auth("me", "pw"),
        "identitytoken": "idt",
    }
    assert store.get("index.docker.io") == Credentials("me", "pw", "idt")


def test_a_rewrite_replaces_the_file_and_keeps_other_keys(store: CredentialStore) -> None:
    store.path.parent.mkdir(mode=0o700)
    store.path.write_text(json.dumps({"auths": {"https://old:1/": {"auth": auth("a", "b")}},
                                      "psFormat": "table"}))  # fmt: skip
    before = store.path.stat().st_ino
    store.store("old:1", Credentials("c", "d"))
    # Checked now: the next write's temporary may well reuse the freed inode number.
    replaced = store.path.stat().st_ino != before  # a new file renamed over the old one
    store.store("other:2", Credentials("e", "f"))
    data = json.loads(store.path.read_text())
    assert data["psFormat"] == "table"
    assert data["auths"] == {"old:1": {"auth": auth("c", "d")}, "other:2": {"auth": auth("e", "f")}}
    assert replaced
    assert [p.name for p in store.path.parent.iterdir()] == ["config.json"]  # no temporaries


def test_a_failed_write_leaves_the_old_file_whole(
    store: CredentialStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.store("a:1", Credentials("x", "y"))
    old = store.path.read_bytes()

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        store.store("b:2", Credentials("z", "w"))
    assert store.path.read_bytes() == old
    assert [p.name for p in store.path.parent.iterdir()] == ["config.json"]


def test_erase(store: CredentialStore) -> None:
    store.store("a:1", Credentials("x", "y"))
    assert store.erase("http://a:1") is True
    assert store.get("a:1") is None
    assert store.erase("a:1") is False
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_docker_s_file_is_the_fallback(store: CredentialStore) -> None:
    assert store.fallback is not None
    store.fallback.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth("hub", "pw")},
                    "reg:5000": {"username": "old", "password": "style"},
                    "helper.example": {},  # a credential helper's entry: nothing usable
                },
                "credsStore": "desktop",
            }
        )
    )
    assert store.get("docker.io") == Credentials("hub", "pw")
    assert store.get("reg:5000") == Credentials("old", "style")
    assert store.get("helper.example") is None
    store.store("docker.io", Credentials("mine", "first"))
    assert store.get("docker.io") == Credentials("mine", "first")
    assert "mine" not in store.fallback.read_text()  # docker's file is never written


def test_a_broken_file_names_itself(store: CredentialStore) -> None:
    store.path.parent.mkdir(mode=0o700)
    store.path.write_text("{not json")
    with pytest.raises(InvalidArgument, match=r"config\.json: invalid json"):
        store.get("a:1")
    store.path.write_text(json.dumps({"auths": {"a:1": {"auth": "!!!"}}}))
    with pytest.raises(InvalidArgument, match=r"auths\['a:1'\]: invalid auth value"):
        store.get("a:1")


def test_a_missing_file_means_no_credentials(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "none" / "config.json")
    assert store.fallback is None  # an explicit path stands alone
    assert store.get("anything") is None
    assert store.erase("anything") is False
