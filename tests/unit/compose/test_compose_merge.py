"""Several compose files merged by the Compose Specification's rules."""

from __future__ import annotations

from pathlib import Path

from moorage.compose.loader import ProjectOptions, load_project


def _project(tmp_path: Path, *files: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    names = []
    for i, text in enumerate(files):
        name = f"compose{i}.yaml"
        (tmp_path / name).write_text(text)
        names.append(name)
    return load_project(ProjectOptions(files=names, cwd=str(tmp_path), environ=env or {}))


BASE = """
services:
  web:
    image: busybox
    command: ["echo", "base"]
    environment: [A=1, B=2]
    labels: {one: "1"}
    dns: [1.1.1.1]
    ports: ["8000:80", "9000:90"]
    volumes: ["data:/data", "./src:/src"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
volumes:
  data:
"""


def test_mappings_merge_and_scalars_are_replaced(tmp_path: Path) -> None:
    override = """
services:
  web:
    image: busybox:1
    environment: {B: "3", C: "4"}
    labels: [two=2]
"""
    web = _project(tmp_path, BASE, override).services["web"]
    assert web.image == "busybox:1"
    assert dict(web.environment) == {"A": "1", "B": "3", "C": "4"}
    assert dict(web.labels) == {"one": "1", "two": "2"}


def test_sequences_append_but_commands_are_replaced(tmp_path: Path) -> None:
    override = """
services:
  web:
    command: echo over
    dns: [8.8.8.8, 1.1.1.1]
    healthcheck:
      test: ["CMD", "false"]
"""
    web = _project(tmp_path, BASE, override).services["web"]
    assert web.command == ("echo", "over")
    assert web.dns == ("1.1.1.1", "8.8.8.8")
    assert web.healthcheck is not None
    assert web.healthcheck.test == ("CMD", "false")
    assert web.healthcheck.interval == 5.0  # the rest of the mapping merges


def test_ports_and_volumes_are_unique_by_their_keys(tmp_path: Path) -> None:
    override = """
services:
  web:
    ports: ["8000:80", "7000:70"]
    volumes: ["other:/data:ro"]
volumes:
  other:
"""
    web = _project(tmp_path, BASE, override).services["web"]
    assert [(p.published, p.target) for p in web.ports] == [
        ("8000", 80),
        ("9000", 90),
        ("7000", 70),
    ]
    data = [m for m in web.mounts if m.target == "/data"]
    assert len(data) == 1
    assert data[0].source.endswith("_other")
    assert data[0].read_only


def test_reset_and_override_tags(tmp_path: Path) -> None:
    override = """
services:
  web:
    ports: !reset []
    dns: !override [9.9.9.9]
    labels: !reset null
"""
    web = _project(tmp_path, BASE, override).services["web"]
    assert web.ports == ()
    assert web.dns == ("9.9.9.9",)
    assert dict(web.labels) == {}


def test_a_later_file_adds_a_service(tmp_path: Path) -> None:
    project = _project(tmp_path, BASE, "services:\n  db:\n    image: busybox\n")
    assert sorted(project.services) == ["db", "web"]


def test_paths_are_relative_to_the_first_files_directory(tmp_path: Path) -> None:
    web = _project(tmp_path, BASE).services["web"]
    binds = [m for m in web.mounts if m.type == "bind"]
    assert binds[0].source == str(tmp_path / "src")


def test_anchors_extensions_and_the_legacy_version(tmp_path: Path) -> None:
    text = """
version: "3.8"
x-defaults: &defaults
  image: busybox
  restart: no
services:
  a:
    <<: *defaults
    command: ["true"]
  b:
    <<: *defaults
    x-note: ignored
"""
    project = _project(tmp_path, text)
    assert project.services["a"].restart == "no"
    assert project.services["b"].image == "busybox"


def test_dot_env_and_the_environment_interpolate(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=1.36\nPORT=8080\n")
    text = 'services:\n  a:\n    image: "busybox:${TAG}"\n    ports: ["${PORT}:80"]\n'
    project = _project(tmp_path, text, env={"PORT": "9090"})
    assert project.services["a"].image == "busybox:1.36"
    assert project.services["a"].ports[0].published == "9090"  # the environment wins


def test_the_project_name(tmp_path: Path) -> None:
    directory = tmp_path / "My_Shop.App"
    directory.mkdir()
    (directory / "compose.yaml").write_text("services:\n  a:\n    image: busybox\n")
    assert load_project(ProjectOptions(cwd=str(directory), environ={})).name == "my_shopapp"
    named = ProjectOptions(cwd=str(directory), environ={"COMPOSE_PROJECT_NAME": "fromenv"})
    assert load_project(named).name == "fromenv"
    flag = ProjectOptions(
        cwd=str(directory), environ={"COMPOSE_PROJECT_NAME": "x"}, project_name="p"
    )
    assert load_project(flag).name == "p"
    (directory / "compose.yaml").write_text("name: infile\nservices:\n  a:\n    image: busybox\n")
    assert load_project(ProjectOptions(cwd=str(directory), environ={})).name == "infile"


def test_profiles_leave_services_out_unless_active_or_named(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a:\n    image: busybox\n  dbg:\n    image: busybox\n    profiles: [debug]\n"
    )
    plain = load_project(ProjectOptions(cwd=str(tmp_path), environ={}))
    assert sorted(plain.services) == ["a"]
    active = load_project(ProjectOptions(cwd=str(tmp_path), environ={}, profiles=["debug"]))
    assert sorted(active.services) == ["a", "dbg"]
    named = load_project(ProjectOptions(cwd=str(tmp_path), environ={}, services=["dbg"]))
    assert "dbg" in named.services
