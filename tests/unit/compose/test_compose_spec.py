"""A service's options mapped onto the Engine API's container create body."""

from __future__ import annotations

from pathlib import Path

from moorage.compose.loader import ProjectOptions, load_project
from moorage.compose.model import config_hash
from moorage.compose.spec import create_body

TEXT = """
services:
  web:
    image: busybox
    command: echo "hello world"
    entrypoint: ["/bin/sh", "-c"]
    environment: {A: "1"}
    env_file: [web.env]
    ports: ["127.0.0.1:8080:80", "9000-9001:9000-9001/udp"]
    expose: ["3000"]
    volumes:
      - data:/data
      - ./src:/src:ro
      - type: bind
        source: ./conf
        target: /conf
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1m}
      - /anon
    user: "1000:1000"
    working_dir: /src
    read_only: true
    init: true
    hostname: webhost
    labels: {team: a}
    restart: on-failure:3
    stop_grace_period: 1m30s
    stop_signal: SIGINT
    healthcheck:
      test: curl -f http://localhost/
      interval: 10s
      timeout: 500ms
      retries: 3
    deploy:
      resources:
        limits: {memory: 64m, cpus: "0.5", pids: 100}
    networks:
      back: {aliases: [api]}
networks:
  back:
volumes:
  data:
"""


def _body(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    (tmp_path / "compose.yaml").write_text(TEXT)
    (tmp_path / "web.env").write_text("A=from-file\nB=2\n")
    project = load_project(ProjectOptions(cwd=str(tmp_path), environ={}, project_name="p"))
    return create_body(project, project.services["web"], 1, image_id="sha256:abc")


def test_process_and_labels(tmp_path: Path) -> None:
    body = _body(tmp_path)
    assert body["Cmd"] == ["echo", "hello world"]
    assert body["Entrypoint"] == ["/bin/sh", "-c"]
    assert sorted(body["Env"]) == ["A=1", "B=2"]  # environment over env_file
    assert body["User"] == "1000:1000"
    assert body["WorkingDir"] == "/src"
    assert body["Hostname"] == "webhost"
    assert body["StopSignal"] == "SIGINT"
    assert body["StopTimeout"] == 90
    labels = body["Labels"]
    assert labels["team"] == "a"
    assert labels["com.docker.compose.project"] == "p"
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert labels["com.docker.compose.image"] == "sha256:abc"
    assert len(labels["com.docker.compose.config-hash"]) == 64


def test_ports_healthcheck_and_limits(tmp_path: Path) -> None:
    body = _body(tmp_path)
    host = body["HostConfig"]
    assert host["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "9000/udp": [{"HostIp": "", "HostPort": "9000"}],
        "9001/udp": [{"HostIp": "", "HostPort": "9001"}],
    }
    assert set(body["ExposedPorts"]) == {"80/tcp", "3000/tcp", "9000/udp", "9001/udp"}
    assert body["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/"],
        "Interval": 10_000_000_000,
        "Timeout": 500_000_000,
        "Retries": 3,
    }
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 100
    assert host["ReadonlyRootfs"] is True
    assert host["Init"] is True
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_volumes_and_networks(tmp_path: Path) -> None:
    body = _body(tmp_path)
    host = body["HostConfig"]
    assert host["Binds"] == [f"{tmp_path}/src:/src:ro"]
    assert host["Mounts"] == [
        {"Type": "volume", "Target": "/data", "Source": "p_data"},
        {"Type": "bind", "Target": "/conf", "Source": f"{tmp_path}/conf"},
        {"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1024 * 1024}},
        {"Type": "volume", "Target": "/anon"},
    ]
    assert host["NetworkMode"] == "p_back"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"p_back": {"Aliases": ["web", "api"]}}}


def test_the_hash_ignores_replicas_but_not_the_environment(tmp_path: Path) -> None:
    def hash_of(text: str) -> str:
        (tmp_path / "compose.yaml").write_text(text)
        project = load_project(ProjectOptions(cwd=str(tmp_path), environ={}, project_name="p"))
        return config_hash(project.services["a"])

    base = hash_of("services:\n  a:\n    image: busybox\n")
    assert hash_of("services:\n  a:\n    image: busybox\n    deploy: {replicas: 3}\n") == base
    assert hash_of("services:\n  a:\n    image: busybox\n    environment: [X=1]\n") != base
