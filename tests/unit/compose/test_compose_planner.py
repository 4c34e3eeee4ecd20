"""Convergence decisions: create, recreate, start, keep, remove, in dependency order."""

from __future__ import annotations

from pathlib import Path

from moorage.compose.loader import ProjectOptions, load_project
from moorage.compose.model import Project, config_hash
from moorage.compose.planner import Observed, plan

TEXT = """
services:
  web:
    image: busybox
    environment: {MODE: "${MODE:-a}"}
    depends_on: [db]
  db:
    image: busybox
  worker:
    image: busybox
    deploy: {replicas: 2}
"""


def _project(tmp_path: Path, env: dict[str, str] | None = None) -> Project:
    (tmp_path / "compose.yaml").write_text(TEXT)
    return load_project(ProjectOptions(cwd=str(tmp_path), environ=env or {}, project_name="p"))


def _running(project: Project, service: str, number: int = 1, state: str = "running") -> Observed:
    return Observed(
        id=f"{service}{number}",
        name=f"p-{service}-{number}",
        service=service,
        number=number,
        config_hash=config_hash(project.services[service]),
        image_id="sha256:img",
        state=state,
    )


def _kinds(result, service: str) -> list[str]:  # type: ignore[no-untyped-def]
    found = result.of(service)
    assert found is not None
    return [a.kind for a in found.actions]


def test_nothing_there_creates_everything_in_dependency_order(tmp_path: Path) -> None:
    result = plan(_project(tmp_path), [])
    assert [s.service for s in result.services].index("db") < [
        s.service for s in result.services
    ].index("web")
    assert _kinds(result, "worker") == ["create", "create"]
    assert [a.number for a in result.of("worker").actions] == [1, 2]  # type: ignore[union-attr]


def test_an_unchanged_project_keeps_its_containers(tmp_path: Path) -> None:
    project = _project(tmp_path)
    observed = [
        _running(project, s, n) for s, n in (("web", 1), ("db", 1), ("worker", 1), ("worker", 2))
    ]
    result = plan(project, observed, image_ids={s: "sha256:img" for s in project.services})
    assert {a.kind for a in result.actions()} == {"keep"}


def test_a_changed_environment_recreates_only_that_service(tmp_path: Path) -> None:
    before = _project(tmp_path)
    observed = [_running(before, "web"), _running(before, "db")]
    after = _project(tmp_path, env={"MODE": "b"})
    result = plan(after, observed, services=["web"])
    assert _kinds(result, "web") == ["recreate"]
    assert _kinds(result, "db") == ["keep"]


def test_a_new_image_recreates(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = plan(
        project, [_running(project, "db")], services=["db"], image_ids={"db": "sha256:new"}
    )
    assert _kinds(result, "db") == ["recreate"]
    assert result.of("db").actions[0].reason == "image changed"  # type: ignore[union-attr]


def test_a_stopped_container_is_started(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = plan(project, [_running(project, "db", state="exited")], services=["db"])
    assert _kinds(result, "db") == ["start"]


def test_force_recreate_and_no_recreate(tmp_path: Path) -> None:
    project = _project(tmp_path)
    observed = [_running(project, "db")]
    assert _kinds(plan(project, observed, services=["db"], force_recreate=True), "db") == [
        "recreate"
    ]
    stale = [Observed("x", "p-db-1", "db", 1, "old-hash", "", "running")]
    assert _kinds(plan(project, stale, services=["db"], no_recreate=True), "db") == ["keep"]


def test_scale_up_and_down(tmp_path: Path) -> None:
    project = _project(tmp_path)
    two = [_running(project, "worker", 1), _running(project, "worker", 2)]
    up = plan(project, two, services=["worker"], scale={"worker": 4})
    assert [(a.kind, a.number) for a in up.of("worker").actions] == [  # type: ignore[union-attr]
        ("keep", 1),
        ("keep", 2),
        ("create", 3),
        ("create", 4),
    ]
    down = plan(project, two, services=["worker"], scale={"worker": 1})
    assert [(a.kind, a.number) for a in down.of("worker").actions] == [  # type: ignore[union-attr]
        ("remove", 2),
        ("keep", 1),
    ]


def test_a_gap_in_the_numbers_is_filled(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = plan(project, [_running(project, "worker", 2)], services=["worker"])
    assert [(a.kind, a.number) for a in result.of("worker").actions] == [  # type: ignore[union-attr]
        ("keep", 2),
        ("create", 1),
    ]


def test_dependencies_come_along_unless_asked_not_to(tmp_path: Path) -> None:
    project = _project(tmp_path)
    assert [s.service for s in plan(project, [], services=["web"]).services] == ["db", "web"]
    alone = plan(project, [], services=["web"], with_deps=False)
    assert [s.service for s in alone.services] == ["web"]


def test_containers_of_removed_services_are_orphans(tmp_path: Path) -> None:
    project = _project(tmp_path)
    gone = Observed("z", "p-old-1", "old", 1, "h", "", "running")
    assert plan(project, [gone]).orphans == (gone,)


def test_one_off_containers_are_not_converged(tmp_path: Path) -> None:
    project = _project(tmp_path)
    oneoff = Observed("r", "p-db-run-1", "db", 1, "h", "", "running", oneoff=True)
    assert _kinds(plan(project, [oneoff], services=["db"]), "db") == ["create"]
