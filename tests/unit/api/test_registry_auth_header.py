"""X-Registry-Auth: what the docker CLI sends, read back by the daemon."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from moorage.api.registry_auth import (
    Credentials,
    CredentialStore,
    credentials_from_json,
    decode_registry_auth,
    encode_registry_auth,
)


def b64url(data: object, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    return text if pad else text.rstrip("=")


def test_round_trip() -> None:
    creds = Credentials("me", "pä:ss/+word?")
    header = encode_registry_auth(creds, "localhost:5000")
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "username": "me",
        "password": "pä:ss/+word?",
        "serveraddress": "localhost:5000",
    }
    assert decode_registry_auth(header) == creds


def test_identity_tokens_travel_without_a_password() -> None:
    header = encode_registry_auth(Credentials("me", "", "idt"), "https://index.docker.io/v1/")
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "identitytoken": "idt",
        "serveraddress": "https://index.docker.io/v1/",
    }
    assert decode_registry_auth(header) == Credentials("", "", "idt")


def test_anonymous_is_an_empty_object() -> None:
    assert base64.urlsafe_b64decode(encode_registry_auth(None)) == b"{}"
    assert decode_registry_auth(encode_registry_auth(None)) is None


@pytest.mark.parametrize("pad", [True, False])
def test_unpadded_and_standard_alphabet_headers_are_read(pad: bool) -> None:
    data = {"username": "u?>?", "password": "~~~>"}  # encodes with - and _ in base64url
    assert decode_registry_auth(b64url(data, pad)) == Credentials("u?>?", "~~~>")
    standard = base64.b64encode(json.dumps(data).encode()).decode()
    assert decode_registry_auth(standard) == Credentials("u?>?", "~~~>")


@pytest.mark.parametrize("header", [None, "", "   ", "not base64!", b64url([1, 2]), b64url("x")])
def test_unreadable_headers_mean_anonymous(header: str | None) -> None:
    assert decode_registry_auth(header) is None


def test_a_config_style_auth_field_is_understood() -> None:
    auth = base64.b64encode(b"me:secret").decode()
    assert credentials_from_json({"auth": auth}) == Credentials("me", "secret")
    assert credentials_from_json({"registrytoken": "tok"}) == Credentials(registry_token="tok")


def test_every_stored_login_goes_into_a_builds_registry_config(tmp_path: Path) -> None:
    from moorage.api.registry_auth import decode_registry_config, encode_registry_config

    store = CredentialStore(tmp_path / "config.json", fallback=tmp_path / "none.json")
    assert encode_registry_config(store) is None
    store.store("localhost:5000", Credentials("me", "pw"))
    store.store("docker.io", Credentials("", "", "token"))

    logins = decode_registry_config(encode_registry_config(store))

    assert logins == {
        "localhost:5000": Credentials("me", "pw"),
        "https://index.docker.io/v1/": Credentials("", "", "token"),
    }
