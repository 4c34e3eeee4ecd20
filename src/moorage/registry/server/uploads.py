"""Blob upload sessions: POST opens one, PATCH appends, PUT commits, DELETE cancels.

A session is a row in ``registry.db`` (id -> repository) and an ingest in the content
store named ``registry-upload-<id>``, so its data is written, hashed and verified the
way every Moorage blob is: nothing becomes visible under a digest unless the bytes hash
to it, and an upload cut off half-way is only ever a partial ingest, resumable from
the offset ``GET`` reports and removed by ``moor registry gc`` once stale.

A session's writer stays open between requests: reopening one re-hashes everything
written so far, which would make a chunked upload quadratic. Open writers are closed
(their data kept) when idle, or when too many are open; the next request reopens one.
Requests on one session are serialised by its lock.

Bodies stream from the socket to the file: the event loop gathers up to
:data:`FLUSH_SIZE` bytes while a worker thread writes and hashes (hashlib in C, outside
the GIL) the previous piece, so receiving and hashing overlap and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Final, Protocol

from moorage.errors import MoorageError, NotFound, Unavailable
from moorage.oci.digest import Digest
from moorage.registry.server.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    ChunkOutOfOrder,
    DigestInvalid,
    SizeInvalid,
    UploadBusy,
)
from moorage.registry.server.names import check_upload_id, new_upload_id
from moorage.registry.server.ranges import ByteRange, upload_range
from moorage.registry.server.storage import Storage
from moorage.store.content import ContentWriter

__all__ = ["FLUSH_SIZE", "UPLOAD_REF_PREFIX", "Body", "Uploads", "upload_ref"]

log = logging.getLogger(__name__)

UPLOAD_REF_PREFIX: Final = "registry-upload-"
FLUSH_SIZE: Final = 1 << 20


class Body(Protocol):
    """A request body as aiohttp's StreamReader gives it: ``b""`` at its end."""

    def readany(self) -> Awaitable[bytes]: ...


def upload_ref(upload_id: str) -> str:
    return UPLOAD_REF_PREFIX + upload_id


class _Session:
    __slots__ = ("ended", "id", "lock", "repo", "used", "writer")

    def __init__(self, upload_id: str, repo: str) -> None:
        self.id = upload_id
        self.repo = repo
        self.writer: ContentWriter | None = None
        self.lock = asyncio.Lock()
        self.used = time.monotonic()
        # Committed or cancelled: a request that queued on the lock meanwhile must not
        # open a new, empty ingest under the same id.
        self.ended = False


async def _pump(body: Body, writer: ContentWriter, limit: int | None) -> int:
    """Append the whole body to ``writer``; returns how many bytes it had.

    SizeInvalid as soon as the body passes ``limit``. On any error, every piece
    received before it is written (the session's offset says how far it got).
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[int] | None = None
    buffer = bytearray()
    received = 0
    try:
        while chunk := await body.readany():
            received += len(chunk)
            if limit is not None and received > limit:
                raise SizeInvalid(f"upload chunk is longer than its Content-Range ({limit} bytes)")
            buffer += chunk
            if len(buffer) >= FLUSH_SIZE:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, writer.write, buffer)
                buffer = bytearray()
    finally:
        # Always: the writer must not be left with a write in flight, and what
        # arrived is kept even when the rest did not.
        if pending is not None:
            await pending
        if buffer:
            await asyncio.to_thread(writer.write, buffer)
    return received


class Uploads:
    """The upload sessions of one server over ``storage``."""

    def __init__(self, storage: Storage, *, max_open: int = 128, idle_seconds: float = 300) -> None:
        self.storage = storage
        self.max_open = max_open
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, _Session] = {}

    # ----------------------------------------------------------------- sessions

    async def start(self, repo: str) -> str:
        """A new session in ``repo``; returns its id."""
        upload_id = new_upload_id()
        session = _Session(upload_id, repo)

        def create() -> ContentWriter:
            self.storage.db.add_upload(upload_id, repo)
            return self.storage.content.writer(upload_ref(upload_id))

        session.writer = await asyncio.to_thread(create)
        self._sessions[upload_id] = session
        await self._limit_open()
        return upload_id

    def _unknown(self, repo: str, upload_id: str) -> BlobUploadUnknown:
        return BlobUploadUnknown(
            f"blob upload unknown to registry: {repo} upload {upload_id[:64]}",
            detail={"upload": upload_id[:64]},
        )

    async def _session(self, repo: str, upload_id: str) -> _Session:
        if check_upload_id(upload_id) is None:
            raise self._unknown(repo, upload_id)
        session = self._sessions.get(upload_id)
        if session is None:
            # Started before a restart, or closed while idle: the database knows.
            owner = self.storage.db.upload_repo(upload_id)
            if owner is None:
                raise self._unknown(repo, upload_id)
            session = self._sessions.setdefault(upload_id, _Session(upload_id, owner))
        if session.repo != repo:
            raise self._unknown(repo, upload_id)
        return session

    async def _writer(self, session: _Session) -> ContentWriter:
        """The session's open writer (call with its lock held)."""
        if session.ended:
            raise self._unknown(session.repo, session.id)
        session.used = time.monotonic()
        if session.writer is None:
            try:
                session.writer = await asyncio.to_thread(
                    self.storage.content.writer, upload_ref(session.id)
                )
            except Unavailable as exc:
                raise UploadBusy(f"upload {session.id} is busy in another process") from exc
            await self._limit_open()
        return session.writer

    # ----------------------------------------------------------------- requests

    async def offset(self, repo: str, upload_id: str) -> int:
        """How many bytes the session holds (GET on the upload)."""
        session = await self._session(repo, upload_id)
        async with session.lock:
            return (await self._writer(session)).offset

    async def append(
        self,
        repo: str,
        upload_id: str,
        body: Body,
        chunk: ByteRange | None,
        length: int | None,
    ) -> int:
        """Append a PATCH body; returns the new offset.

        ChunkOutOfOrder (416) unless ``chunk`` starts where the data ends and agrees
        with ``length``. A body that does not fill its range is taken back out.
        """
        session = await self._session(repo, upload_id)
        async with session.lock:
            writer = await self._writer(session)
            await self._receive(session, writer, body, chunk, length)
            return writer.offset

    async def finish(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        body: Body | None,
        chunk: ByteRange | None,
        length: int | None,
    ) -> None:
        """Append a last chunk if there is one, then verify and commit as ``digest``."""
        session = await self._session(repo, upload_id)
        async with session.lock:
            writer = await self._writer(session)
            if body is not None:
                await self._receive(session, writer, body, chunk, length)
            # Whatever the outcome, this writer is spent: committed, discarded (a digest
            # mismatch ends the session) or closed with its data kept for a retry.
            session.writer = None
            try:
                await asyncio.to_thread(
                    self.storage.commit_upload, repo, writer, digest, session.id
                )
            except DigestInvalid:
                session.ended = True
                self._sessions.pop(session.id, None)
                raise
            session.ended = True
            self._sessions.pop(session.id, None)

    async def cancel(self, repo: str, upload_id: str) -> None:
        session = await self._session(repo, upload_id)
        async with session.lock:
            if session.ended:
                raise self._unknown(repo, upload_id)
            writer = session.writer
            self._sessions.pop(session.id, None)
            session.writer, session.ended = None, True

            def remove() -> None:
                if writer is not None:
                    writer.abort()
                else:
                    with contextlib.suppress(NotFound):
                        self.storage.content.abort_ingest(upload_ref(session.id))
                self.storage.db.delete_upload(session.id)

            try:
                await asyncio.to_thread(remove)
            except Unavailable as exc:
                raise UploadBusy(f"upload {session.id} is busy in another process") from exc

    async def whole(self, repo: str, digest: Digest, body: Body, length: int | None) -> None:
        """A blob in one request (POST with ``?digest=``): no session outlives it."""
        ref = upload_ref(new_upload_id())
        writer = await asyncio.to_thread(self.storage.content.writer, ref, expected=digest)
        try:
            received = await _pump(body, writer, length)
            if length is not None and received != length:
                raise SizeInvalid(f"upload of {digest}: got {received} of {length} bytes")
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        try:
            await asyncio.to_thread(self.storage.commit_upload, repo, writer, digest, None)
        except DigestInvalid:
            raise  # the content store removed the data already
        except BaseException:
            with contextlib.suppress(MoorageError):
                await asyncio.to_thread(self.storage.content.abort_ingest, ref)
            raise

    async def _receive(
        self,
        session: _Session,
        writer: ContentWriter,
        body: Body,
        chunk: ByteRange | None,
        length: int | None,
    ) -> None:
        start = writer.offset
        limit = length
        if chunk is not None:
            if chunk.start != start or (length is not None and length != chunk.length):
                raise ChunkOutOfOrder(
                    f"upload {session.id}: chunk {chunk.start}-{chunk.end} does not follow "
                    f"the {start} bytes received",
                    headers={"Range": upload_range(start)},
                )
            limit = chunk.length
        try:
            received = await _pump(body, writer, limit)
        except SizeInvalid:
            await asyncio.to_thread(writer.truncate, start)
            raise
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            # The client went away: the data that arrived stays, for it to resume.
            raise BlobUploadInvalid(f"upload {session.id}: body cut off: {exc}") from exc
        finally:
            session.used = time.monotonic()
        if chunk is not None and received != chunk.length:
            await asyncio.to_thread(writer.truncate, start)
            raise SizeInvalid(
                f"upload {session.id}: chunk {chunk.start}-{chunk.end} carried {received} bytes"
            )

    # ----------------------------------------------------------------- housekeeping

    async def _limit_open(self) -> None:
        """Close the least recently used idle writers beyond ``max_open``."""
        open_sessions = [s for s in self._sessions.values() if s.writer is not None]
        excess = len(open_sessions) - self.max_open
        if excess <= 0:
            return
        open_sessions.sort(key=lambda s: s.used)
        for session in open_sessions:
            if excess <= 0:
                break
            if not session.lock.locked():
                self._close(session)
                excess -= 1

    def _close(self, session: _Session) -> None:
        writer, session.writer = session.writer, None
        if writer is not None:
            writer.close()  # the data stays; the next request reopens it
        self._sessions.pop(session.id, None)

    def close_idle(self) -> int:
        """Close writers idle for ``idle_seconds``; returns how many."""
        cutoff = time.monotonic() - self.idle_seconds
        idle = [
            s
            for s in self._sessions.values()
            if s.used < cutoff and not s.lock.locked() and s.writer is not None
        ]
        for session in idle:
            self._close(session)
        return len(idle)

    async def run_reaper(self, interval: float = 60.0) -> None:
        """Close idle writers every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            closed = self.close_idle()
            if closed:
                log.debug("closed %d idle upload writers", closed)

    def close(self) -> None:
        for session in list(self._sessions.values()):
            self._close(session)
