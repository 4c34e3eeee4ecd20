"""Container inspect as older API versions show it: the short ID among the aliases."""

from __future__ import annotations

from typing import Any

from moorage.api.docker.compat import container_inspect


def _inspect(networks: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": "0123456789abcdef" * 4,
        "Config": {"Hostname": "web"},
        "NetworkSettings": {"Networks": networks},
    }


def test_user_defined_networks_get_the_short_id_and_hostname_once() -> None:
    data = _inspect({"shop_back": {"Aliases": ["db", "0123456789ab"]}, "other": {}})
    container_inspect("1.44", data)
    networks = data["NetworkSettings"]["Networks"]
    assert networks["shop_back"]["Aliases"] == ["db", "0123456789ab", "web"]
    assert networks["other"]["Aliases"] == ["0123456789ab", "web"]


def test_builtin_networks_are_left_alone() -> None:
    data = _inspect({"bridge": {"Aliases": None}, "host": {"Aliases": None}})
    container_inspect("1.44", data)
    assert all(e["Aliases"] is None for e in data["NetworkSettings"]["Networks"].values())


def test_from_1_45_the_aliases_are_as_configured() -> None:
    data = _inspect({"shop_back": {"Aliases": ["db"]}})
    container_inspect("1.45", data)
    assert data["NetworkSettings"]["Networks"]["shop_back"]["Aliases"] == ["db"]
