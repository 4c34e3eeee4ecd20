"""HangupWatch: a peer that closes is a hang-up, one that only stops sending is not."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from moorage.sys.hangup import HangupWatch


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


@pytest.fixture
def watch(pair: tuple[socket.socket, socket.socket]) -> Iterator[HangupWatch]:
    w = HangupWatch(pair[0].fileno())
    try:
        yield w
    finally:
        w.close()


def _readable(w: HangupWatch) -> bool:
    return bool(select.select([w.fileno()], [], [], 0)[0])


def test_a_connected_peer_is_no_hang_up(watch: HangupWatch) -> None:
    assert not watch.hung_up()
    assert not _readable(watch)


def test_a_peer_that_only_stops_sending_is_no_hang_up(
    pair: tuple[socket.socket, socket.socket], watch: HangupWatch
) -> None:
    pair[1].shutdown(socket.SHUT_WR)  # `docker run -i` once its input ends

    assert not watch.hung_up()


def test_a_peer_that_closes_has_hung_up(
    pair: tuple[socket.socket, socket.socket], watch: HangupWatch
) -> None:
    pair[1].close()

    assert watch.hung_up()
    assert _readable(watch)  # what an event loop waits for
