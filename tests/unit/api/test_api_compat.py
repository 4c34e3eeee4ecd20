"""What differs between API versions (``compat``), query flags, and the Content-Type of
attach, exec and logs streams: pure functions, no daemon."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from moorage.api.docker import compat, params
from moorage.api.docker.hijack import stream_content_type
from moorage.api.docker.server import api_version, version_before
from moorage.errors import InvalidArgument

RAW = "application/vnd.docker.raw-stream"
MUX = "application/vnd.docker.multiplexed-stream"

SUMMARY: dict[str, Any] = {"Id": "sha256:1", "RepoTags": [], "RepoDigests": [], "Size": 7}

INSPECT: dict[str, Any] = {
    "Id": "sha256:1",
    "Created": "",
    "Size": 7,
    "Config": {"Hostname": "", "Tty": False, "Image": "", "Cmd": ["sh"], "User": ""},
    "Descriptor": {"digest": "sha256:2"},
}


# --- the request's version -----------------------------------------------------------------


def test_an_unversioned_request_speaks_the_newest_version() -> None:
    assert api_version(make_mocked_request("GET", "/_ping")) == "1.50"


def test_a_versioned_request_speaks_its_path_s_version() -> None:
    request = make_mocked_request("GET", "/v1.41/_ping", match_info={"version": "1.41"})

    assert api_version(request) == "1.41"
    assert version_before(request, "1.42")
    assert not version_before(request, "1.41")


# --- stream content types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "multiplexed", "upgraded", "content_type"),
    [
        ("1.41", True, True, RAW),
        ("1.42", True, True, MUX),
        ("1.50", True, True, MUX),
        ("1.50", False, True, RAW),  # a tty
        ("1.50", True, False, RAW),  # not upgraded: dockerd says raw whatever it sends
    ],
)
def test_a_multiplexed_stream_says_so_from_1_42(
    version: str, multiplexed: bool, upgraded: bool, content_type: str
) -> None:
    assert stream_content_type(version, multiplexed=multiplexed, upgraded=upgraded) == content_type


# --- images --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            "1.41",
            {**SUMMARY, "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"]}
            | {"VirtualSize": 7},
        ),
        ("1.43", {**SUMMARY, "VirtualSize": 7}),
        ("1.44", SUMMARY),
        ("1.50", SUMMARY),
    ],
)
def test_an_image_summary_has_its_version_s_fields(version: str, expected: Any) -> None:
    assert compat.image_summary(version, {**SUMMARY, "VirtualSize": 7}) == expected


def test_a_tagged_image_is_never_none_none() -> None:
    tagged = {**SUMMARY, "RepoTags": ["busybox:latest"]}

    assert compat.image_summary("1.41", tagged)["RepoTags"] == ["busybox:latest"]


def test_image_inspect_in_1_50_has_no_container_only_config_fields() -> None:
    data = compat.image_inspect("1.50", INSPECT)

    assert data["Config"] == {"Cmd": ["sh"], "User": ""}
    assert "Created" not in data  # unset: left out from 1.44
    assert "VirtualSize" not in data
    assert "Container" not in data
    assert data["Descriptor"] == {"digest": "sha256:2"}


def test_image_inspect_in_1_41_has_the_legacy_fields() -> None:
    data = compat.image_inspect("1.41", INSPECT)

    assert data["Config"]["Hostname"] == ""
    assert data["Config"]["AttachStdout"] is False
    assert data["Created"] == "0001-01-01T00:00:00Z"
    assert data["VirtualSize"] == 7
    assert data["Container"] == ""
    assert data["ContainerConfig"]["Cmd"] is None
    assert "Descriptor" not in data


@pytest.mark.parametrize(("version", "has_config_legacy"), [("1.49", True), ("1.50", False)])
def test_image_inspect_drops_container_fields_at_1_50(
    version: str, has_config_legacy: bool
) -> None:
    config = compat.image_inspect(version, INSPECT)["Config"]

    assert ("Tty" in config) == has_config_legacy


# --- info and df ---------------------------------------------------------------------------


def test_info_before_1_50_has_bridge_nf_fields_and_before_1_49_nondistributable() -> None:
    info = {"RegistryConfig": {"InsecureRegistryCIDRs": []}}

    old = compat.info("1.48", info)
    new = compat.info("1.50", {**info, "BridgeNfIptables": False})

    assert old["BridgeNfIptables"] is False
    assert old["RegistryConfig"]["AllowNondistributableArtifactsCIDRs"] is None
    assert "BridgeNfIptables" not in new
    assert new["RegistryConfig"] == {"InsecureRegistryCIDRs": []}


def test_df_types_fill_only_the_parts_asked_for() -> None:
    data = {
        "LayersSize": 5,
        "Images": [SUMMARY],
        "Containers": [{}],
        "Volumes": [{}],
        "BuildCache": [],
    }

    types = compat.disk_usage_types("1.50", ["volume"])
    out = compat.disk_usage("1.50", data, types)

    assert out == {
        "LayersSize": 0,
        "Images": None,
        "Containers": None,
        "Volumes": [{}],
        "BuildCache": None,
    }


def test_df_types_are_checked_from_1_42_and_ignored_before() -> None:
    assert compat.disk_usage_types("1.41", ["bogus"]) == []
    with pytest.raises(InvalidArgument, match="unknown object type: bogus"):
        compat.disk_usage_types("1.42", ["bogus"])


def test_df_images_have_their_version_s_shape() -> None:
    out = compat.disk_usage("1.43", {"Images": [SUMMARY]})

    assert out["Images"][0]["VirtualSize"] == 7


# --- create and exec requests --------------------------------------------------------------


def test_unknown_create_fields_are_dropped_without_a_word() -> None:
    body = {"Image": "busybox", "Bogus": 1, "HostConfig": {"Memory": 1, "AlsoBogus": 2}}

    assert compat.create_request("1.50", body) == {"Image": "busybox", "HostConfig": {"Memory": 1}}


def test_create_fields_match_in_any_case_an_exact_match_winning() -> None:
    body = {"image": "lower", "cmd": ["true"], "hostconfig": {"nanocpus": 5}, "Image": "exact"}

    out = compat.create_request("1.50", body)

    assert out == {"Image": "exact", "Cmd": ["true"], "HostConfig": {"NanoCpus": 5}}


def test_create_values_of_the_wrong_type_are_left_for_the_engine_to_name() -> None:
    body = {"Image": "busybox", "Cmd": 5, "HostConfig": []}

    assert compat.create_request("1.50", body) == body


def test_create_before_1_42_ignores_console_size_and_foreign_mount_options() -> None:
    mount = {"Type": "tmpfs", "Target": "/t", "BindOptions": {"Propagation": "shared"}}
    body = {"Image": "b", "HostConfig": {"ConsoleSize": [24, 80], "Mounts": [mount]}}

    out = compat.create_request("1.41", body)

    assert out["HostConfig"] == {"Mounts": [{"Type": "tmpfs", "Target": "/t"}]}
    assert body["HostConfig"]["ConsoleSize"] == [24, 80]  # the caller's is left alone


def test_create_from_1_42_refuses_options_of_another_mount_type() -> None:
    mount = {"Type": "volume", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1}}

    with pytest.raises(
        InvalidArgument, match='TmpfsOptions must not be specified on mount type "volume"'
    ):
        compat.create_request("1.42", {"Image": "b", "HostConfig": {"Mounts": [mount]}})


def test_create_before_1_43_ignores_annotations() -> None:
    body = {"Image": "b", "HostConfig": {"Annotations": {"a": "b"}}}

    assert compat.create_request("1.42", body)["HostConfig"] == {}
    assert compat.create_request("1.43", body)["HostConfig"] == {"Annotations": {"a": "b"}}


def test_create_before_1_44_takes_one_network_and_no_start_interval() -> None:
    two = {"Image": "b", "NetworkingConfig": {"EndpointsConfig": {"n1": {}, "n2": {}}}}
    health = {"Image": "b", "Healthcheck": {"Test": ["NONE"], "StartInterval": 5}}

    with pytest.raises(InvalidArgument, match="multiple network endpoints: n1, n2"):
        compat.create_request("1.43", two)
    assert compat.create_request("1.44", two) == two
    assert compat.create_request("1.43", health)["Healthcheck"] == {"Test": ["NONE"]}


def test_exec_console_size_counts_from_1_42() -> None:
    body = {"Cmd": ["sh"], "ConsoleSize": [24, 80]}

    assert compat.exec_request("1.41", body) == {"Cmd": ["sh"]}
    assert compat.exec_request("1.42", body) == body


# --- query flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("True", True), ("yes", True), ("0", False), ("false", False)]
    + [("no", False), ("", False)],
)
def test_flags_take_the_spellings_clients_send(value: str, expected: bool) -> None:
    assert params.flag(make_mocked_request("GET", f"/x?all={value}"), "all") is expected


def test_an_absent_flag_is_its_default() -> None:
    assert params.flag(make_mocked_request("GET", "/x"), "stream", True) is True


@pytest.mark.parametrize("value", ["maybe", "2", "yess"])
def test_a_flag_that_is_no_boolean_is_refused(value: str) -> None:
    with pytest.raises(InvalidArgument, match=f"invalid value for all: '{value}'"):
        params.flag(make_mocked_request("GET", f"/x?all={value}"), "all")


# --- a container update's body ----------------------------------------------------------


def test_the_router_matches_keys_in_any_case_and_drops_unknown_ones() -> None:
    body = compat.update_request({"memory": 67108864, "Bogus": 1, "restartpolicy": {"name": "no"}})

    assert body == {"Memory": 67108864, "RestartPolicy": {"Name": "no"}}


@pytest.mark.parametrize(("pids", "stored"), [(-1, 0), (-5, 0), (0, 0), (7, 7), (None, None)])
def test_the_router_reads_a_pids_limit_below_1_as_unlimited(
    pids: int | None, stored: int | None
) -> None:
    assert compat.update_request({"PidsLimit": pids}).get("PidsLimit") == stored
