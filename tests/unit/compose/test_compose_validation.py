"""Bad compose files: an error naming the file, the service and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.compose.loader import ProjectOptions, load_project
from moorage.compose.model import ComposeFileError
from moorage.errors import InvalidArgument


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    (tmp_path / "compose.yaml").write_text(text)
    return load_project(ProjectOptions(cwd=str(tmp_path), environ=env or {}))


def _error(tmp_path: Path, text: str) -> ComposeFileError:
    with pytest.raises(ComposeFileError) as info:
        _load(tmp_path, text)
    assert info.value.file == "compose.yaml"
    return info.value


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ComposeFileError, match=r"compose.yaml:3:\d+: invalid YAML"):
        _load(tmp_path, "services:\n  web:\n    image: busybox: bad\n")


def test_a_duplicate_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ComposeFileError, match="already defined"):
        _load(tmp_path, "services:\n  web:\n    image: a\n    image: b\n")


def test_an_unknown_key(tmp_path: Path) -> None:
    error = _error(tmp_path, "services:\n  web:\n    image: busybox\n    portz: [80]\n")
    assert error.path == "services.web.portz"
    assert "unknown key 'portz'" in str(error)


def test_a_key_of_the_specification_not_done_here(tmp_path: Path) -> None:
    error = _error(tmp_path, "services:\n  web:\n    image: busybox\n    devices: []\n")
    assert error.path == "services.web.devices"
    assert "not supported" in str(error)


@pytest.mark.parametrize(
    ("snippet", "path", "words"),
    [
        ("read_only: yes-please", "services.web.read_only", "must be a boolean"),
        ("ports: 80", "services.web.ports", "must be a list"),
        ("ports: ['80:abc']", "services.web.ports[0]", 'invalid port "abc"'),
        ("environment: {A: [1]}", "services.web.environment.A", "must be a string"),
        ("restart: sometimes", "services.web.restart", "invalid restart policy"),
        ("stop_grace_period: soon", "services.web.stop_grace_period", "invalid duration"),
        ("deploy: {replicas: many}", "services.web.deploy.replicas", "must be an integer"),
        ("deploy: {resources: {limits: {memory: lots}}}",
         "services.web.deploy.resources.limits.memory", "invalid size"),
        ("volumes: ['relative:data']", "services.web.volumes[0]", "absolute path"),
        ("depends_on: {db: {condition: whenever}}", "services.web.depends_on.db.condition",
         "is not one of"),
        ("healthcheck: {test: [echo]}", "services.web.healthcheck.test", "NONE, CMD or CMD-SHELL"),
    ],
)  # fmt: skip
def test_a_wrong_type_or_value(tmp_path: Path, snippet: str, path: str, words: str) -> None:
    error = _error(tmp_path, f"services:\n  web:\n    image: busybox\n    {snippet}\n")
    assert error.path == path
    assert words in str(error)
    assert str(error).startswith(f"compose.yaml: {path}: ")


def test_a_dependency_cycle(tmp_path: Path) -> None:
    text = """
services:
  a: {image: busybox, depends_on: [b]}
  b: {image: busybox, depends_on: [c]}
  c: {image: busybox, depends_on: [a]}
"""
    error = _error(tmp_path, text)
    assert error.path == "services.a.depends_on"
    assert "dependency cycle: a -> b -> c -> a" in str(error)


def test_a_dependency_on_an_undefined_service(tmp_path: Path) -> None:
    error = _error(tmp_path, "services:\n  a:\n    image: busybox\n    depends_on: [ghost]\n")
    assert error.path == "services.a.depends_on.ghost"


def test_an_undefined_required_variable(tmp_path: Path) -> None:
    text = "services:\n  db:\n    image: busybox\n    environment:\n      PW: ${PW:?the password}\n"
    error = _error(tmp_path, text)
    assert error.path == "services.db.environment.PW"
    assert "required variable PW is missing a value: the password" in str(error)
    assert _load(tmp_path, text, env={"PW": "s3cret"}) is not None


def test_an_undeclared_named_volume_or_network(tmp_path: Path) -> None:
    error = _error(tmp_path, "services:\n  a:\n    image: busybox\n    volumes: ['data:/d']\n")
    assert error.path == "services.a.volumes[0]"
    error = _error(tmp_path, "services:\n  a:\n    image: busybox\n    networks: [back]\n")
    assert error.path == "services.a.networks.back"


def test_a_service_needs_an_image_or_a_build(tmp_path: Path) -> None:
    error = _error(tmp_path, "services:\n  a:\n    command: ['true']\n")
    assert error.path == "services.a"


def test_the_error_names_the_file_that_set_the_key(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("services:\n  a:\n    image: busybox\n")
    (tmp_path / "over.yaml").write_text("services:\n  a:\n    depends_on: [ghost]\n")
    with pytest.raises(ComposeFileError) as info:
        load_project(
            ProjectOptions(files=["base.yaml", "over.yaml"], cwd=str(tmp_path), environ={})
        )
    assert info.value.file == "over.yaml"


def test_a_bad_project_name(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: busybox\n")
    with pytest.raises(InvalidArgument, match="invalid project name"):
        load_project(ProjectOptions(cwd=str(tmp_path), environ={}, project_name="Bad Name"))


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ComposeFileError, match="the top level must be a mapping"):
        _load(tmp_path, "- a\n- b\n")
