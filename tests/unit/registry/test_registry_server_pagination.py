"""Paging of tag lists and the catalog: ``n``, ``last`` and the Link to the next page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.registry.server.errors import PaginationInvalid
from moorage.registry.server.metadata import ManifestRecord, RegistryDB
from moorage.registry.server.paths import next_link
from moorage.registry.server.routes_discovery import MAX_PAGE, page_of

DIGEST = "sha256:" + "cd" * 32


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ({}, (None, "")),
        ({"n": ""}, (None, "")),
        ({"n": "5"}, (5, "")),
        ({"n": "0"}, (0, "")),
        ({"last": "v1"}, (None, "v1")),
        ({"n": "2", "last": "v1"}, (2, "v1")),
        ({"n": str(MAX_PAGE * 10)}, (MAX_PAGE, "")),
    ],
)
def test_page_of(query: dict[str, str], page: tuple[int | None, str]) -> None:
    assert page_of(query) == page


@pytest.mark.parametrize("n", ["-1", "1.5", "ten", "١٢"])
def test_a_malformed_n_is_refused(n: str) -> None:
    with pytest.raises(PaginationInvalid, match="invalid n"):
        page_of({"n": n})


def test_next_link_is_rfc5988() -> None:
    assert next_link("/v2/_catalog", 10, "a/b") == '</v2/_catalog?n=10&last=a/b>; rel="next"'


@pytest.fixture
def db(tmp_path: Path) -> Iterator[RegistryDB]:
    database = RegistryDB(tmp_path / "registry.db")
    try:
        database.put_manifest("app", ManifestRecord(DIGEST, "x", 1), None)
        for tag in ("b", "A", "a", "10", "9", "_z"):
            database.put_manifest("app", ManifestRecord(DIGEST, "x", 1), tag)
        yield database
    finally:
        database.close()


def test_tags_sort_as_bytes(db: RegistryDB) -> None:
    assert db.tags("app") == ["10", "9", "A", "_z", "a", "b"]


def test_tags_start_after_last_and_stop_at_the_limit(db: RegistryDB) -> None:
    assert db.tags("app", last="A", limit=2) == ["_z", "a"]
    assert db.tags("app", last="b") == []
    assert db.tags("app", last="0", limit=-1) == ["10", "9", "A", "_z", "a", "b"]


def test_repositories_page_the_same_way(db: RegistryDB) -> None:
    for repo in ("c", "a/b"):
        db.link_blob(repo, DIGEST)
    assert db.repositories() == ["a/b", "app", "c"]
    assert db.repositories(last="a/b", limit=1) == ["app"]
