"""unread_output: what the peer of a unix stream socket has not read yet."""

from __future__ import annotations

import socket

from moorage.sys.sockets import unread_output


def test_unread_output_counts_until_the_peer_has_read_everything() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        assert unread_output(ours.fileno()) == 0
        ours.sendall(b"headers\r\n\r\n")
        assert unread_output(ours.fileno()) > 0
        assert peer.recv(100) == b"headers\r\n\r\n"
        assert unread_output(ours.fileno()) == 0
