"""RUN --mount specifications (moorage.build.dockerfile.mounts)."""

from __future__ import annotations

import pytest

from moorage.build.dockerfile.mounts import Mount, MountError, parse_mount

MOUNTS = [
    ("target=/src", Mount(target="/src", readonly=True)),
    ("type=bind,source=/a,target=/b", Mount(source="/a", target="/b")),
    ("type=bind,src=/a,dst=/b,rw", Mount(source="/a", target="/b", readonly=False)),
    ("type=bind,from=build,destination=/b", Mount(from_="build", target="/b")),
    ("type=bind,target=/b,readwrite=true", Mount(target="/b", readonly=False)),
    ("type=bind,target=/b,ro=false", Mount(target="/b", readonly=False)),
    ("TYPE=CACHE,Target=/c", Mount(type="cache", target="/c", readonly=False)),
    (
        "type=cache,target=/c,id=pip,sharing=locked,mode=0700,uid=1000,gid=1000",
        Mount(
            type="cache",
            target="/c",
            id="pip",
            sharing="locked",
            mode=0o700,
            uid=1000,
            gid=1000,
            readonly=False,
        ),
    ),
    ("type=cache,target=/c,ro", Mount(type="cache", target="/c", readonly=True)),
    (
        "type=cache,target=/c,sharing=PRIVATE",
        Mount(type="cache", target="/c", sharing="private", readonly=False),
    ),
    (
        "type=tmpfs,target=/t,size=64m",
        Mount(type="tmpfs", target="/t", size=64 << 20, readonly=False),
    ),
    (
        "type=tmpfs,target=/t,size=1.5g",
        Mount(type="tmpfs", target="/t", size=3 << 29, readonly=False),
    ),
    (
        "type=tmpfs,target=/t,size=512KiB",
        Mount(type="tmpfs", target="/t", size=512 << 10, readonly=False),
    ),
    ("type=tmpfs,target=/t,size=100", Mount(type="tmpfs", target="/t", size=100, readonly=False)),
    ("type=secret,id=tok", Mount(type="secret", id="tok")),
    (
        "type=secret,target=/run/secrets/x,required",
        Mount(type="secret", target="/run/secrets/x", required=True),
    ),
    ("type=secret,id=tok,env=TOKEN,required=false", Mount(type="secret", id="tok", env="TOKEN")),
    ("type=secret,source=file.txt,mode=0400", Mount(type="secret", source="file.txt", mode=0o400)),
    ("type=ssh", Mount(type="ssh")),
    ("type=ssh,id=default,required=true", Mount(type="ssh", id="default", required=True)),
    ('"type=bind","target=/a,b"', Mount(target="/a,b")),
]


@pytest.mark.parametrize(("spec", "mount"), MOUNTS)
def test_parse_mount(spec: str, mount: Mount) -> None:
    assert parse_mount(spec) == mount


ERRORS = [
    ("type=nfs,target=/x", 'unsupported mount type "nfs"'),
    ("type=cache,target=/x,sharing=open", 'unsupported sharing value "open"'),
    ("type=bind,target=/x,sharing=locked", "invalid cache sharing set for bind mount"),
    ("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
    ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
    ("type=cache,target=/x,required=true", "unexpected key 'required' for mount type 'cache'"),
    ("type=bind,target=/x,mode=0755", 'mode not allowed for "bind" type mounts'),
    ("type=tmpfs,target=/x,uid=0", 'uid not allowed for "tmpfs" type mounts'),
    ("type=cache,target=/x,mode=999", "invalid value 999 for mode"),
    ("type=cache,target=/x,uid=-1", "invalid value -1 for uid"),
    ("type=cache,target=/x,gid=1_0", "invalid value 1_0 for gid"),
    ("type=cache,target=/x,uid=4294967296", "invalid value 4294967296 for uid"),
    ("type=tmpfs,target=/x,size=lots", "invalid value for size: lots"),
    ("type=tmpfs,target=/x,size=1.2.3m", "invalid value for size: 1.2.3m"),
    ("type=bind,target=/x,ro=maybe", "invalid value for ro: maybe"),
    ("type=bind,target=/x,nosuid", "invalid field 'nosuid' must be a key=value pair"),
    ("type=bind,target=/x,colour=red", "unexpected key 'colour' in 'colour=red'"),
    ("type=secret", "invalid secret mount. one of source, target required"),
    ("type=secret,id=a,source=b", "both source and id can't be set"),
    ("type=secret,id=a,from=build", "secret mount should not have a from"),
    ("type=secret,id=a,sharing=shared", "secret mount should not define sharing"),
    ('type=bind,"target=/x', "failed to parse csv mounts"),
]


@pytest.mark.parametrize(("spec", "message"), ERRORS)
def test_parse_mount_errors(spec: str, message: str) -> None:
    with pytest.raises(MountError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_mount(spec)


def test_values_are_expanded_field_by_field() -> None:
    env = {"T": "cache", "DIR": "/root/.cache", "ID": "a,b"}
    mount = parse_mount("type=$T,target=$DIR,id=$ID", lambda w: _expand(w, env))
    assert mount == Mount(type="cache", target="/root/.cache", id="a,b", readonly=False)


def test_bare_words_are_not_expanded() -> None:
    seen: list[str] = []
    parse_mount("type=secret,id=x,required", lambda w: seen.append(w) or w)
    assert seen == ["secret", "x"]


def test_without_an_expander_a_spec_with_variables_only_yields_its_from() -> None:
    assert parse_mount("type=$T,from=build,target=$D") == Mount(from_="build")
    assert parse_mount("type=$T,target=$D") == Mount()


@pytest.mark.parametrize("spec", ["from=$X", "from=a${X}", "type=bind,from=$X,target=/a"])
def test_from_cannot_use_variables(spec: str) -> None:
    with pytest.raises(MountError, match="'from' doesn't support variable expansion"):
        parse_mount(spec)


def test_a_trailing_dollar_in_from_is_literal() -> None:
    assert parse_mount("type=bind,from=weird$,target=$T").from_ == "weird$"


def _expand(word: str, env: dict[str, str]) -> str:
    return env.get(word[1:], "") if word.startswith("$") else word


def test_a_misspelt_key_gets_a_suggestion() -> None:
    with pytest.raises(
        MountError, match=r"unexpected key 'taget' in 'taget=/x' \(did you mean target\?\)"
    ):
        parse_mount("type=bind,taget=/x")
