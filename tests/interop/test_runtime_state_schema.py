"""``state`` output against a JSON Schema of the OCI runtime state, for both runtimes.

The schema is written here from the runtime-spec's "State" section, not taken from
either runtime: ``ociVersion``, ``id``, ``status`` and ``bundle`` are required;
``status`` is one of creating, created, running, stopped; ``pid`` is required while
the container process exists (created, running) and is a host pid; ``bundle`` is an
absolute path; ``annotations`` maps strings to strings. Other properties are allowed:
the spec lets a runtime add its own (runc adds rootfs, created, owner).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from parity_harness import Runtime, Workspace

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]

OCI_STATE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://moorage.invalid/schemas/oci-runtime-state.json",
    "title": "OCI runtime state",
    "type": "object",
    "required": ["ociVersion", "id", "status", "bundle"],
    "properties": {
        "ociVersion": {
            "type": "string",
            # SemVer 2.0.0, as the spec requires of ociVersion.
            "pattern": r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
            r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$",
        },
        "id": {"type": "string", "minLength": 1},
        "status": {"enum": ["creating", "created", "running", "stopped"]},
        "pid": {"type": "integer", "minimum": 0},
        "bundle": {"type": "string", "pattern": "^/"},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "allOf": [
        {
            # "REQUIRED when status is created or running on Linux".
            "if": {
                "properties": {"status": {"enum": ["created", "running"]}},
                "required": ["status"],
            },
            "then": {"required": ["pid"], "properties": {"pid": {"minimum": 1}}},
        }
    ],
}

# A container that stays up until killed.
LONG_RUNNING = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
ANNOTATIONS = {"org.moorage.schema": "yes", "org.moorage.empty": ""}


def validate(state: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(OCI_STATE_SCHEMA).validate(state)


@pytest.fixture
def workspace(busybox_template: Path) -> Iterator[Workspace]:
    with Workspace.open(busybox_template) as ws:
        yield ws


def _state_through_lifecycle(ws: Workspace, runtime: str) -> tuple[Path, dict[str, Any]]:
    """``state`` output while created, running and stopped under ``runtime``."""
    rt: Runtime = ws.runtimes[runtime]

    def edit(config: dict[str, Any], ctx: object) -> None:
        config["annotations"] = dict(ANNOTATIONS)

    bundle, _ = ws.bundle(runtime, LONG_RUNNING, edit)
    cid = f"schema-{uuid.uuid4().hex[:8]}"
    seen: dict[str, Any] = {}
    try:
        rt.checked("create", "--bundle", str(bundle), cid)
        seen["created"] = json.loads(rt.checked("state", cid).stdout)
        rt.checked("start", cid)
        rt.await_status(cid, "running")
        seen["running"] = json.loads(rt.checked("state", cid).stdout)
        rt.checked("kill", cid, "KILL")
        rt.await_status(cid, "stopped")
        seen["stopped"] = json.loads(rt.checked("state", cid).stdout)
    finally:
        rt("delete", "--force", cid)
    return bundle, {"id": cid, **seen}


@pytest.mark.parametrize("runtime", ["moor", "runc"])
@pytest.mark.parametrize("phase", ["created", "running", "stopped"])
def test_state_output_matches_schema(workspace: Workspace, runtime: str, phase: str) -> None:
    bundle, seen = _state_through_lifecycle(workspace, runtime)
    state = seen[phase]
    validate(state)
    assert state["status"] == phase
    assert state["id"] == seen["id"]
    assert state["bundle"] == str(bundle)
    assert state.get("annotations") == ANNOTATIONS


def test_schema_rejects_what_the_spec_forbids() -> None:
    good = {
        "ociVersion": "1.2.0",
        "id": "c1",
        "status": "running",
        "pid": 42,
        "bundle": "/b",
    }
    validate(good)
    validate({**{k: v for k, v in good.items() if k != "pid"}, "status": "stopped"})
    bad: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "id"},
        {k: v for k, v in good.items() if k != "bundle"},
        {k: v for k, v in good.items() if k != "pid"},
        {**good, "status": "exploded"},
        {**good, "ociVersion": "one"},
        {**good, "bundle": "relative/bundle"},
        {**good, "pid": -1},
        {**good, "pid": 0},
        {**good, "annotations": {"a": 1}},
    ]
    for doc in bad:
        with pytest.raises(jsonschema.ValidationError):
            validate(doc)
