"""Image references: Docker's normalisation, the grammar, round trips (moorage.oci.reference)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.errors import InvalidArgument
from moorage.oci import Reference, parse_digest, parse_reference

D = "sha256:" + "0123456789abcdef" * 4
HEX64 = "f" * 64

# input, canonical str(), familiar() (None: the canonical form)
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/user/app:1.0", "docker.io/user/app:1.0", "user/app:1.0"),
    ("user/app:1.0", "docker.io/user/app:1.0", "user/app:1.0"),
    ("user/team/app", "docker.io/user/team/app:latest", "user/team/app:latest"),
    ("library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y"),
    ("localhost:5000/a/b@" + D, "localhost:5000/a/b@" + D, "localhost:5000/a/b@" + D),
    ("busybox@" + D, "docker.io/library/busybox@" + D, "busybox@" + D),
    ("busybox:1.36@" + D, "docker.io/library/busybox:1.36@" + D, "busybox:1.36@" + D),
    ("ghcr.io/org/app:v2", "ghcr.io/org/app:v2", "ghcr.io/org/app:v2"),
    ("quay.io/a/b/c/d:tag", "quay.io/a/b/c/d:tag", "quay.io/a/b/c/d:tag"),
    ("registry.example.com:443/app", "registry.example.com:443/app:latest", None),
    ("10.0.0.1:5000/app", "10.0.0.1:5000/app:latest", "10.0.0.1:5000/app:latest"),
    ("[::1]:5000/app:t", "[::1]:5000/app:t", "[::1]:5000/app:t"),
    ("Registry.Example.COM/app", "Registry.Example.COM/app:latest", None),
    ("MyHost/app", "MyHost/app:latest", None),
    ("team/a.b_c__d-e---f", "docker.io/team/a.b_c__d-e---f:latest", "team/a.b_c__d-e---f:latest"),
    ("user/my_app.v2-beta", "docker.io/user/my_app.v2-beta:latest", "user/my_app.v2-beta:latest"),
    ("busybox:_tag-1.x", "docker.io/library/busybox:_tag-1.x", "busybox:_tag-1.x"),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128, "busybox:" + "t" * 128),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    ("docker.io/foo.com/app", "docker.io/foo.com/app:latest", "docker.io/foo.com/app:latest"),
    (HEX64 + ":tag", f"docker.io/library/{HEX64}:tag", f"{HEX64}:tag"),
]


@pytest.mark.parametrize(("text", "canonical", "familiar"), VALID)
def test_valid_references(text: str, canonical: str, familiar: str | None) -> None:
    reference = parse_reference(text)

    assert str(reference) == canonical
    assert reference.familiar() == (familiar or canonical)
    assert parse_reference(canonical) == reference
    assert parse_reference(reference.familiar()) == reference


# input, message after "invalid reference format: "
INVALID = [
    ("", '""'),
    ("Busybox", 'repository name must be lowercase: "Busybox"'),
    ("user/App", 'repository name must be lowercase: "user/App"'),
    ("docker.io/Library/busybox", "repository name must be lowercase"),
    (HEX64, "repository name must not be a 64-character hex string"),
    ("busybox:", '"busybox:"'),
    ("busybox:-tag", '"busybox:-tag"'),
    ("busybox:.tag", '"busybox:.tag"'),
    ("busybox:" + "t" * 129, '"busybox:ttt'),
    ("busybox:a:b", '"busybox:a:b"'),
    ("busybox@", '"busybox@"'),
    ("busybox@sha256:abc", '"busybox@sha256:abc"'),
    ("busybox@sha256:" + "A" * 64, '"busybox@sha256:AAA'),
    ("busybox@md5:d41d8cd98f00b204e9800998ecf8427e", '"busybox@md5:'),
    ("@" + D, '"@sha256:'),
    (":tag", '":tag"'),
    ("/busybox", '"/busybox"'),
    ("busybox/", '"busybox/"'),
    ("user//app", '"user//app"'),
    ("-user/app", '"-user/app"'),
    ("user/app-", '"user/app-"'),
    ("user/a..b", '"user/a..b"'),
    ("user/a___b", '"user/a___b"'),
    ("bu sybox", '"bu sybox"'),
    ("host_name.com/app", '"host_name.com/app"'),
    ("a.b_c/x", '"a.b_c/x"'),
    ("-host.com/app", '"-host.com/app"'),
    ("localhost:port/app", '"localhost:port/app"'),
    ("registry.example.com/", '"registry.example.com/"'),
    ("ünïcode", '"ünïcode"'),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_reference(text)

    assert str(caught.value).startswith("invalid reference format: " + message)


def test_name_length_limit_counts_the_canonical_name() -> None:
    path = "a" * (255 - len("docker.io/library/"))

    assert parse_reference(path).name == "docker.io/library/" + path
    with pytest.raises(InvalidArgument, match="must not be more than 255 characters"):
        parse_reference(path + "a")


def test_default_tag() -> None:
    assert parse_reference("busybox", default_tag="stable").tag == "stable"
    assert parse_reference("busybox", default_tag=None).tag is None
    assert parse_reference("busybox@" + D).tag is None


def test_parts() -> None:
    reference = parse_reference("localhost:5000/team/app:1.0@" + D)

    assert reference == Reference("localhost:5000", "team/app", "1.0", parse_digest(D))
    assert reference.name == "localhost:5000/team/app"
    assert reference.repository == "team/app"
    assert reference.digest is not None
    assert reference.digest.hex == D[7:]


def test_with_tag_and_digest() -> None:
    reference = parse_reference("busybox")

    assert str(reference.with_tag("1.36")) == "docker.io/library/busybox:1.36"
    pinned = reference.with_digest(D)
    assert str(pinned) == "docker.io/library/busybox:latest@" + D
    assert str(pinned.with_tag("musl")) == "docker.io/library/busybox:musl@" + D


def test_with_tag_and_digest_validate() -> None:
    reference = parse_reference("busybox")

    with pytest.raises(InvalidArgument, match='^invalid tag: "-x"$'):
        reference.with_tag("-x")
    with pytest.raises(InvalidArgument, match='^invalid digest: "sha256:1"$'):
        reference.with_digest("sha256:1")


# --------------------------------------------------------------------------- properties

_component = st.from_regex(r"\A[a-z0-9]{1,6}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,6}){0,2}\Z")
_label = st.from_regex(r"\A[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\Z")
_domain = st.one_of(
    st.just("localhost"),
    st.builds(lambda a, b: f"{a}.{b}", _label, _label),
    st.builds(lambda a, port: f"{a}:{port}", _label, st.integers(0, 65535)),
    st.builds(lambda port: f"[::1]:{port}", st.integers(1, 65535)),
)
_tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
_digest = st.from_regex(r"\Asha256:[0-9a-f]{64}\Z")


@st.composite
def _references(draw: st.DrawFn) -> tuple[str, str | None, str | None]:
    """A reference as text, with the tag and digest written in it."""
    domain = draw(st.none() | _domain)
    components = draw(st.lists(_component, min_size=1, max_size=4))
    if domain is None and len(components) > 1:
        # A first component with a dot would be read as a registry host.
        components[0] = components[0].replace(".", "-")
    text = "/".join(([domain] if domain else []) + components)
    tag = draw(st.none() | _tag)
    digest = draw(st.none() | _digest)
    if tag is not None:
        text += ":" + tag
    if digest is not None:
        text += "@" + digest
    return text, tag, digest


@given(_references())
def test_str_parses_back(case: tuple[str, str | None, str | None]) -> None:
    reference = parse_reference(case[0])

    assert parse_reference(str(reference)) == reference
    assert parse_reference(reference.familiar()) == reference


@given(_references())
def test_parsing_keeps_tag_and_digest(case: tuple[str, str | None, str | None]) -> None:
    text, tag, digest = case

    reference = parse_reference(text, default_tag=None)

    assert (reference.tag, reference.digest) == (tag, digest)
    assert str(reference).endswith(text.rpartition("/")[2])


@given(st.text(max_size=40))
def test_anything_either_parses_or_is_invalid_argument(text: str) -> None:
    # Any other exception escapes and fails the test.
    with contextlib.suppress(InvalidArgument):
        reference = parse_reference(text)
        assert parse_reference(str(reference)) == reference
