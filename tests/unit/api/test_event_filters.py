"""GET /events' ``image`` filter, as dockerd matches it: a container event by its image,
an image event by its id or name (the reference, for a pull or push), tag or no tag."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.api.docker.system import _event_matches

IMAGE_ID = "sha256:" + "a" * 64
REPO = "127.0.0.1:5000/a/b"


def event(kind: str, actor_id: str, **attributes: str) -> dict[str, Any]:
    return {"Type": kind, "Action": "x", "Actor": {"ID": actor_id, "Attributes": attributes}}


@pytest.mark.parametrize(
    ("e", "wanted", "matches"),
    [
        (event("container", "c1", image="busybox"), "busybox", True),
        (event("container", "c1", image="busybox:1"), "busybox", True),
        (event("container", "c1", image="busybox"), "alpine", False),
        (event("image", IMAGE_ID, name="app:1"), "app:1", True),
        (event("image", IMAGE_ID, name="app:1"), "app", True),
        (event("image", IMAGE_ID, name=IMAGE_ID), IMAGE_ID, True),
        (event("image", IMAGE_ID, name=IMAGE_ID), "sha256", False),
        (event("image", f"{REPO}:1", name=REPO), f"{REPO}:1", True),
        (event("image", f"{REPO}:1", name=REPO), REPO, True),
        (event("image", f"{REPO}:1", name=REPO), "127.0.0.1", False),
    ],
)  # fmt: skip
def test_image_filter(e: dict[str, Any], wanted: str, matches: bool) -> None:
    assert _event_matches(e, {"image": [wanted]}) is matches
