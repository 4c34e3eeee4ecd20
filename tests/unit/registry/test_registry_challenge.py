"""WWW-Authenticate challenges as registries and token servers write them."""

from __future__ import annotations

from moorage.registry.client.challenge import Challenge, parse_challenges


def test_docker_hub_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull",
            },
        )
    ]


def test_commas_inside_a_quoted_scope_do_not_split_it() -> None:
    header = (
        'Bearer realm="r",scope="repository:a:pull,push repository:b:pull",'
        'error="insufficient_scope"'
    )
    [challenge] = parse_challenges(header)
    assert challenge.params["scope"] == "repository:a:pull,push repository:b:pull"
    assert challenge.params["error"] == "insufficient_scope"


def test_basic_challenge() -> None:
    assert parse_challenges('Basic realm="Registry Realm"') == [
        Challenge("basic", {"realm": "Registry Realm"})
    ]


def test_several_challenges_in_one_header_and_spaces_around_equals() -> None:
    found = parse_challenges('Basic realm = "a" ,  Bearer realm="https://t/token", service=svc')
    assert found == [
        Challenge("basic", {"realm": "a"}),
        Challenge("bearer", {"realm": "https://t/token", "service": "svc"}),
    ]


def test_several_header_lines() -> None:
    found = parse_challenges(['Basic realm="a"', 'Bearer realm="b"'])
    assert [c.scheme for c in found] == ["basic", "bearer"]


def test_case_of_scheme_and_names_is_ignored_values_keep_theirs() -> None:
    [challenge] = parse_challenges('BEARER Realm="HTTPS://Auth/Token",SERVICE="Reg"')
    assert challenge == Challenge("bearer", {"realm": "HTTPS://Auth/Token", "service": "Reg"})


def test_quoted_pairs_are_unescaped() -> None:
    [challenge] = parse_challenges(r'Bearer realm="a \"quoted\" realm\\x"')
    assert challenge.params["realm"] == 'a "quoted" realm\\x'


def test_a_scheme_without_parameters() -> None:
    assert parse_challenges("Negotiate, Basic realm=x") == [
        Challenge("negotiate", {}),
        Challenge("basic", {"realm": "x"}),
    ]


def test_an_unterminated_quote_keeps_what_was_read() -> None:
    found = parse_challenges('Basic realm="a", Bearer realm="never closed')
    assert found[0] == Challenge("basic", {"realm": "a"})


def test_empty_and_garbage_headers() -> None:
    assert parse_challenges("") == []
    assert parse_challenges("   ,  ") == []
    assert parse_challenges('"quoted"') == []
