"""Image configs and chain ids (moorage.oci.image)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from moorage.errors import InvalidArgument
from moorage.oci import (
    MAX_MANIFEST_SIZE,
    ContainerConfig,
    Healthcheck,
    History,
    ImageConfig,
    Platform,
    RootFS,
    chain_ids,
    config_bytes,
    parse_digest,
    parse_image_config,
)

DIFF_1 = "sha256:" + "a" * 64
DIFF_2 = "sha256:" + "b" * 64
DIFF_3 = "sha256:" + "c" * 64

# A config as Docker's classic builder writes one: Docker's capitalised container config,
# the legacy keys Moorage ignores, a HEALTHCHECK, history with empty layers.
DOCKER_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "config": {
        "Hostname": "",
        "Domainname": "",
        "User": "www-data",
        "AttachStdin": False,
        "ExposedPorts": {"80/tcp": {}, "443/tcp": {}, "53/udp": {}},
        "Tty": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=b=c"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Healthcheck": {
            "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
            "Interval": 30000000000,
            "Timeout": 5000000000,
            "StartPeriod": 10000000000,
            "StartInterval": 1000000000,
            "Retries": 3,
        },
        "Image": "sha256:" + "9" * 64,
        "Volumes": {"/var/cache/nginx": {}, "/data": {}},
        "WorkingDir": "/srv",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {"maintainer": "ops@example.com", "org.example.tier": "web"},
        "StopSignal": "SIGQUIT",
    },
    "container": "3f4e2b1a0c9d",
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ", 'CMD ["nginx"]']},
    "created": "2024-03-12T09:41:07.123456789Z",
    "docker_version": "24.0.7",
    "history": [
        {
            "created": "2024-03-01T00:00:00Z",
            "created_by": "/bin/sh -c #(nop) ADD file:1234 in / ",
        },
        {
            "created": "2024-03-01T00:00:01Z",
            "created_by": '/bin/sh -c #(nop)  CMD ["bash"]',
            "empty_layer": True,
        },
        {
            "created": "2024-03-12T09:41:05Z",
            "created_by": "/bin/sh -c apt-get update && apt-get install -y nginx",
            "author": "ops@example.com",
            "comment": "buildkit.dockerfile.v0",
        },
    ],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [DIFF_1, DIFF_2]},
}

OCI_CONFIG: dict[str, Any] = {
    "created": "2024-05-01T10:00:00Z",
    "author": "Example <dev@example.com>",
    "architecture": "arm64",
    "os": "linux",
    "variant": "v8",
    "config": {"Entrypoint": ["/app"], "Cmd": [], "ArgsEscaped": True},
    "rootfs": {"type": "layers", "diff_ids": [DIFF_1]},
}


def _raw(document: object) -> bytes:
    return json.dumps(document, indent=2).encode()


def test_docker_config() -> None:
    config = parse_image_config(_raw(DOCKER_CONFIG))

    assert config == ImageConfig(
        created="2024-03-12T09:41:07.123456789Z",
        author=None,
        architecture="amd64",
        os="linux",
        variant=None,
        config=ContainerConfig(
            user="www-data",
            exposed_ports=("443/tcp", "53/udp", "80/tcp"),
            env=(
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "A=b=c",
            ),
            entrypoint=None,
            cmd=("nginx", "-g", "daemon off;"),
            volumes=("/data", "/var/cache/nginx"),
            working_dir="/srv",
            labels={"maintainer": "ops@example.com", "org.example.tier": "web"},
            stop_signal="SIGQUIT",
            healthcheck=Healthcheck(
                test=("CMD-SHELL", "curl -f http://localhost/ || exit 1"),
                interval=30_000_000_000,
                timeout=5_000_000_000,
                start_period=10_000_000_000,
                start_interval=1_000_000_000,
                retries=3,
            ),
        ),
        rootfs=RootFS("layers", (parse_digest(DIFF_1), parse_digest(DIFF_2))),
        history=(
            History(
                created="2024-03-01T00:00:00Z",
                created_by="/bin/sh -c #(nop) ADD file:1234 in / ",
            ),
            History(
                created="2024-03-01T00:00:01Z",
                created_by='/bin/sh -c #(nop)  CMD ["bash"]',
                empty_layer=True,
            ),
            History(
                created="2024-03-12T09:41:05Z",
                created_by="/bin/sh -c apt-get update && apt-get install -y nginx",
                author="ops@example.com",
                comment="buildkit.dockerfile.v0",
            ),
        ),
    )


def test_oci_config() -> None:
    config = parse_image_config(_raw(OCI_CONFIG))

    assert config.platform == Platform("linux", "arm64", "v8")
    assert config.author == "Example <dev@example.com>"
    assert config.config == ContainerConfig(entrypoint=("/app",), cmd=(), args_escaped=True)


def test_entrypoint_null_and_empty_differ() -> None:
    unset = parse_image_config(_raw(DOCKER_CONFIG)).config
    cleared = parse_image_config(_raw(OCI_CONFIG)).config

    assert unset is not None
    assert cleared is not None
    assert unset.entrypoint is None
    assert cleared.cmd == ()


def test_a_string_cmd_is_one_argument() -> None:
    document = {**OCI_CONFIG, "config": {"Cmd": "echo hi", "Shell": "/bin/bash"}}

    config = parse_image_config(_raw(document)).config

    assert config == ContainerConfig(cmd=("echo hi",), shell=("/bin/bash",))


def test_no_config_and_no_layers() -> None:
    document = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}

    config = parse_image_config(_raw(document))

    assert (config.config, config.rootfs, config.history) == (None, RootFS("layers", ()), ())


@pytest.mark.parametrize("document", [DOCKER_CONFIG, OCI_CONFIG])
def test_round_trip(document: dict[str, Any]) -> None:
    config = parse_image_config(_raw(document))

    raw = config_bytes(config)

    assert parse_image_config(raw) == config
    assert config_bytes(parse_image_config(raw)) == raw


def test_empty_and_absent_container_config_round_trip() -> None:
    for container in (None, ContainerConfig(), ContainerConfig(healthcheck=Healthcheck())):
        config = ImageConfig(None, None, "amd64", "linux", None, container, RootFS())

        assert parse_image_config(config_bytes(config)) == config


def test_config_bytes_are_canonical() -> None:
    config = ImageConfig(
        created="2024-01-01T00:00:00Z",
        author=None,
        architecture="amd64",
        os="linux",
        variant=None,
        config=ContainerConfig(
            exposed_ports=("8080/tcp", "443/tcp"),
            env=("PATH=/bin",),
            entrypoint=(),
            cmd=("sh",),
            labels={"b": "2", "a": "1"},
            healthcheck=Healthcheck(test=("NONE",)),
            on_build=("RUN make",),
        ),
        rootfs=RootFS("layers", (parse_digest(DIFF_1),)),
        history=(History(created_by="RUN a && b", empty_layer=True),),
    )

    assert (
        config_bytes(config)
        == (
            '{"created":"2024-01-01T00:00:00Z","architecture":"amd64","os":"linux",'
            '"config":{"ExposedPorts":{"443/tcp":{},"8080/tcp":{}},"Env":["PATH=/bin"],'
            '"Entrypoint":[],"Cmd":["sh"],"Labels":{"a":"1","b":"2"},'
            '"Healthcheck":{"Test":["NONE"]},"OnBuild":["RUN make"]},'
            f'"rootfs":{{"type":"layers","diff_ids":["{DIFF_1}"]}},'
            '"history":[{"created_by":"RUN a \\u0026\\u0026 b","empty_layer":true}]}'
        ).encode()
    )


def test_non_ascii_is_written_as_utf8() -> None:
    config = ImageConfig(None, "Zoë", "amd64", "linux", None, None, RootFS())

    assert b'"author":"Zo\xc3\xab"' in config_bytes(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"rootfs": {"type": "layers", "diff_ids": [DIFF_1, "sha256:12"]}},
            'config.json: rootfs.diff_ids[1]: invalid digest "sha256:12"',
        ),
        (
            {"rootfs": {"type": "zip", "diff_ids": []}},
            'config.json: rootfs.type: must be "layers", not "zip"',
        ),
        ({"rootfs": None}, "config.json: rootfs: missing"),
        ({"architecture": None}, "config.json: architecture: missing"),
        ({"os": 1}, "config.json: os: must be a string, not integer"),
        (
            {"config": {"Healthcheck": {"Interval": "30s"}}},
            "config.json: config.Healthcheck.Interval: must be an integer, not string",
        ),
        (
            {"config": {"ExposedPorts": {"80/tcp": 1}}},
            'config.json: config.ExposedPorts["80/tcp"]: must be an object, not integer',
        ),
        (
            {"config": {"Env": ["A=1", 2]}},
            "config.json: config.Env[1]: must be a string, not integer",
        ),
        (
            {"history": [{}, {"empty_layer": "yes"}]},
            "config.json: history[1].empty_layer: must be a boolean, not string",
        ),
    ],
)
def test_invalid_configs(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_image_config(_raw({**OCI_CONFIG, **change}))

    assert str(caught.value) == message


def test_config_over_the_limit_is_refused() -> None:
    raw = _raw(OCI_CONFIG)
    raw += b" " * (MAX_MANIFEST_SIZE + 1 - len(raw))

    with pytest.raises(InvalidArgument, match=r"^image config too large: 4194305 bytes$"):
        parse_image_config(raw)


# --------------------------------------------------------------------------- chain ids


def test_chain_ids_worked_out_by_hand() -> None:
    # ChainID(L1) = sha256("sha256:aaa... sha256:bbb..."), ChainID(L2) from that and L2.
    chain1 = "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
    chain2 = "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588"
    diff_ids = [parse_digest(d) for d in (DIFF_1, DIFF_2, DIFF_3)]

    assert chain_ids(diff_ids) == [DIFF_1, chain1, chain2]


def test_chain_ids_follow_the_formula() -> None:
    diff_ids = [parse_digest(d) for d in (DIFF_1, DIFF_2)]
    expected = "sha256:" + hashlib.sha256(f"{DIFF_1} {DIFF_2}".encode()).hexdigest()

    assert chain_ids(diff_ids)[1] == expected


def test_chain_ids_of_nothing() -> None:
    assert chain_ids([]) == []
