"""OCI runtime state JSON (moorage.oci.state)."""

from __future__ import annotations

import pytest

from moorage.errors import InvalidArgument
from moorage.oci import OCI_VERSION, State, Status


def _state(status: str, pid: int | None) -> State:
    return State(OCI_VERSION, "web", status, pid, "/bundles/web")  # type: ignore[arg-type]


def test_running_state_json() -> None:
    state = State(OCI_VERSION, "web", Status.RUNNING, 42, "/b", {"k": "v"})

    assert state.to_dict() == {
        "ociVersion": "1.2.0",
        "id": "web",
        "status": "running",
        "pid": 42,
        "bundle": "/b",
        "annotations": {"k": "v"},
    }


@pytest.mark.parametrize("pid", [0, None])
def test_stopped_state_has_no_pid(pid: int | None) -> None:
    assert "pid" not in _state("stopped", pid).to_dict()


def test_status_string_becomes_status() -> None:
    assert _state("paused", 7).status is Status.PAUSED


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"^unknown container status: 'gone'$"):
        _state("gone", 7)


def test_from_dict_round_trip() -> None:
    state = State(OCI_VERSION, "web", Status.CREATED, 42, "/b", {"k": "v"})

    assert State.from_dict(state.to_dict()) == state


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"ociVersion": "1.2.0", "status": "running", "pid": 1, "bundle": "/b"},
            "state: id: missing",
        ),
        (
            {"ociVersion": "1.2.0", "id": "x", "status": "up", "bundle": "/b"},
            'state: status: unknown status "up"',
        ),
        (
            {"ociVersion": "1.2.0", "id": "x", "status": "running", "bundle": "/b"},
            "state: pid: required when status is running",
        ),
        (
            {"ociVersion": "1.2.0", "id": "x", "status": "running", "pid": True, "bundle": "/b"},
            "state: pid: must be a non-negative integer",
        ),
        ([], "state: must be an object"),
    ],
)
def test_from_dict_rejects(data: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        State.from_dict(data)

    assert str(caught.value) == message
