"""The message channel between the runtime and the process it is setting up.

Messages are ``marshal``-encoded dicts of plain values: both ends are this
package on the same interpreter, marshal is built in (the stage pays no import
for it, where json costs it ~4 ms before every container start), and the peer is
never the container's program: the stage's end is close-on-exec and the stage is
non-dumpable until it execs, so nothing in the container can reach the socket.
A ``SOCK_SEQPACKET`` socket pair keeps message boundaries, so each message is
one JSON object in one datagram. The child end is close-on-exec: when the child
execs the container's process, the parent reads end-of-file, which is how it
learns that exec succeeded without a race.

Messages (``type`` field):

    parent -> child   bootstrap   {config, bundle, ...}      the first message
    child  -> parent  userns      "write my id maps now"
    parent -> child   userns-done
    child  -> parent  pid         {pid}: host pid of the container's process
    child  -> parent  hooks       "run createRuntime/prestart hooks now"
    parent -> child   hooks-done
    child  -> parent  ready       set up and blocked on the exec fifo (or about to exec)
    child  -> parent  error       {message, kind}: setup failed; the child exits
"""

from __future__ import annotations

import _socket
import marshal

from moorage.errors import FailedPrecondition

TYPE_CHECKING = False  # the init imports this module: no typing at run time
if TYPE_CHECKING:
    from typing import Any

MAX_MESSAGE = 4 * 1024 * 1024


class Channel:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The bootstrap message carries the whole config, seccomp profile included.
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, kind: str, **fields: Any) -> None:
        fields["type"] = kind
        self.sock.send(marshal.dumps(fields))

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end-of-file (the peer exec'd or exited)."""
        raw = self.sock.recv(MAX_MESSAGE)
        if not raw:
            return None
        try:
            msg = marshal.loads(raw)
        except (EOFError, ValueError, TypeError) as exc:
            raise FailedPrecondition(f"bad message from container setup: {raw[:80]!r}") from exc
        if not isinstance(msg, dict):
            raise FailedPrecondition(f"bad message from container setup: {raw[:80]!r}")
        return msg

    def close(self) -> None:
        self.sock.close()
