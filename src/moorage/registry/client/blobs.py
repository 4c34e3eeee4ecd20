"""Blobs over the wire: resumable, verified downloads into the content store, and uploads.

Download (:func:`download`). The bytes go into the content store's ingest named
``pull-<digest>``, with the digest and size the manifest gives as its expectations:

- resumable: a new download of a blob whose ingest holds data (a pull killed half-way,
  a connection cut) asks for the rest, ``Range: bytes=<offset>-``. A registry that
  answers 200 (the whole blob) instead of 206 has the partial data thrown away; one that
  answers 206 from another offset, or 416, too. A connection error or a truncated body
  mid-way is retried from where the data ends, with a backoff that restarts whenever a
  try made progress;
- verified: the store hashes the bytes as they are written and the commit refuses a
  blob that does not hash to its digest or has the wrong size (deleting what was
  written, so no blob is ever stored under a digest it does not have); more bytes than
  the manifest gives end the download at once. A mismatch after a resume is tried once
  more from the start, since the resumed part may have been the bad one;
- streamed: received in pieces and written (and hashed) in a worker thread, at most one
  write in flight per blob, while the next piece arrives.

Upload (:func:`upload`), after the caller learnt with :func:`exists` that the registry
lacks the blob: first a cross-repository mount when a source repository is known
(``POST uploads/?mount=<digest>&from=<repository>``: 201 means done, 202 means the
registry started an ordinary upload instead); otherwise ``POST uploads/`` and then the
bytes streamed from the store, in one ``PUT ?digest=`` (monolithic) up to
``chunk_size``, in ``PATCH`` requests of ``chunk_size`` with ``Content-Range`` and a
closing ``PUT ?digest=`` above it. A failed upload starts again from the ``POST``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import aiohttp
from yarl import URL

from moorage.errors import InvalidArgument
from moorage.oci.descriptor import Descriptor
from moorage.registry.client.auth import repository_scope
from moorage.registry.client.backoff import Backoff, Sleep, default_sleep
from moorage.registry.client.errors import (
    DigestMismatch,
    RegistryRejected,
    RegistryUnavailable,
    error_for_status,
)
from moorage.registry.client.progress import Progress, ProgressFn, Throttle
from moorage.registry.client.resolve import Target
from moorage.registry.client.transport import Transport
from moorage.store.content import ContentStore, ContentWriter

__all__ = ["DEFAULT_CHUNK_SIZE", "download", "exists", "ingest_ref", "upload"]

log = logging.getLogger(__name__)

# What one write to the store takes: large enough that the thread hop is cheap.
_WRITE_SIZE = 1 << 20
# Blobs up to this go up in one PUT; bigger ones in PATCH chunks of this size.
DEFAULT_CHUNK_SIZE = 64 << 20
_STREAM_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def ingest_ref(digest: str) -> str:
    """The store ingest a download of ``digest`` writes to: the same for every try."""
    return f"pull-{digest}"


def _what(target: Target, digest: str) -> str:
    return f"{target.reference.name}@{digest}"


async def exists(transport: Transport, target: Target, digest: str) -> bool:
    """Whether the target repository has blob ``digest`` (``HEAD``)."""
    response = await transport.request(
        "HEAD",
        target.host,
        f"/v2/{target.repository}/blobs/{digest}",
        scopes=[repository_scope(target.repository, "pull", "push")],
    )
    async with response:
        if response.status == 200:
            return True
        if response.status == 404:
            return False
        raise error_for_status(response.status, _what(target, digest))


# --------------------------------------------------------------------------- download


async def download(
    transport: Transport,
    target: Target,
    descriptor: Descriptor,
    store: ContentStore,
    *,
    labels: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
    backoff: Backoff | None = None,
    sleep: Sleep = default_sleep,
) -> None:
    """Fetch ``descriptor``'s blob into ``store`` (see the module docstring).

    Raises :class:`~moorage.errors.Unavailable` (``ref locked``) when another writer
    holds the blob's ingest; the caller waits for it.
    """
    report = progress or (lambda _: None)
    digest = str(descriptor.digest)
    policy = backoff or transport.backoff
    while True:
        writer = await asyncio.to_thread(
            store.writer, ingest_ref(digest), expected=digest, total=descriptor.size
        )
        try:
            resumed = writer.offset > 0
            try:
                await _fetch_into(transport, target, descriptor, writer, report, policy, sleep)
            except DigestMismatch:
                await asyncio.to_thread(writer.abort)  # more bytes than announced: keep none
                raise
            report(Progress("verifying", digest, writer.offset, descriptor.size))
            try:
                await asyncio.to_thread(writer.commit, labels=dict(labels or {}))
                return
            except InvalidArgument as exc:
                # The commit deleted the data, so a second round starts from nothing.
                if not resumed:
                    raise _mismatch(target, descriptor, exc) from exc
                log.warning("%s: the resumed download does not verify; fetching it whole", digest)
        finally:
            writer.close()  # keeps partial data for the next try; a no-op once committed


def _mismatch(target: Target, descriptor: Descriptor, exc: InvalidArgument) -> DigestMismatch:
    detail = str(exc)
    _, _, got = detail.partition(", got ")
    if got:
        return DigestMismatch(
            f"{_what(target, descriptor.digest)}: the registry sent content whose digest is "
            f"{got}: not stored"
        )
    return DigestMismatch(f"{_what(target, descriptor.digest)}: {detail}: not stored")


async def _fetch_into(
    transport: Transport,
    target: Target,
    descriptor: Descriptor,
    writer: ContentWriter,
    report: ProgressFn,
    backoff: Backoff,
    sleep: Sleep,
) -> None:
    digest = str(descriptor.digest)
    size = descriptor.size
    what = _what(target, digest)
    throttle = Throttle(size)
    failures = 0
    if writer.offset > size:
        await asyncio.to_thread(writer.truncate, 0)
    while writer.offset < size:
        offset = writer.offset
        response = await transport.request(
            "GET",
            target.host,
            f"/v2/{target.repository}/blobs/{digest}",
            scopes=[repository_scope(target.repository, "pull")],
            headers={"Range": f"bytes={offset}-"} if offset else None,
        )
        problem: BaseException | None = None
        try:
            if not await _positioned(response, writer, offset, what):
                continue
            report(Progress("downloading", digest, writer.offset, size))
            await _receive(response.content, writer, descriptor, what, report, throttle)
        except _STREAM_ERRORS as exc:
            problem = exc
        finally:
            response.release()
        if writer.offset >= size:
            break
        # Cut off, with an error or (a body delimited by the close) without one: resume.
        failures = 0 if writer.offset > offset else failures + 1
        reason = _describe(problem) if problem is not None else "the body ended early"
        if failures >= backoff.attempts:
            raise RegistryUnavailable(
                f"{what}: the download keeps failing at byte {writer.offset} of {size}: {reason}"
            ) from problem
        wait = backoff.wait_for(failures)
        log.info(
            "%s: cut off at byte %d (%s); resuming in %.2fs", what, writer.offset, reason, wait
        )
        await sleep(wait)
    report(Progress("downloading", digest, writer.offset, size))


async def _positioned(
    response: aiohttp.ClientResponse, writer: ContentWriter, offset: int, what: str
) -> bool:
    """Whether the answer's body continues the data at ``offset``; fixes the data if not."""
    if response.status == 206 and offset:
        start = _range_start(response.headers.get("Content-Range"))
        if start == offset:
            return True
        await asyncio.to_thread(writer.truncate, 0)  # a range we did not ask for
        return False
    if response.status == 200:
        if offset:
            await asyncio.to_thread(writer.truncate, 0)  # Range ignored: the whole blob
        return True
    if response.status == 416 and offset:
        await asyncio.to_thread(writer.truncate, 0)
        return False
    body = await response.content.read(64 * 1024)
    raise error_for_status(response.status, what, body)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _range_start(header: str | None) -> int | None:
    found = _CONTENT_RANGE.fullmatch((header or "").strip())
    return int(found.group(1)) if found else None


async def _receive(
    content: aiohttp.StreamReader,
    writer: ContentWriter,
    descriptor: Descriptor,
    what: str,
    report: ProgressFn,
    throttle: Throttle,
) -> None:
    """Copy the body into ``writer`` until it ends; what arrived is written even on errors."""
    digest = str(descriptor.digest)
    size = descriptor.size
    buffer = bytearray()
    writing: asyncio.Future[int] | None = None
    received = writer.offset
    try:
        async for chunk in content.iter_any():
            received += len(chunk)
            if received > size:
                raise DigestMismatch(
                    f"{what}: the registry sent more than the {size} bytes the manifest gives"
                )
            buffer += chunk
            if len(buffer) >= _WRITE_SIZE:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(writer.write, bytes(buffer)))
                buffer.clear()
                if throttle.due(received):
                    report(Progress("downloading", digest, received, size))
    finally:
        if writing is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(writing)
        if buffer and received <= size:
            writer.write(bytes(buffer))  # at most one piece, on the way out: keep it


# --------------------------------------------------------------------------- upload


async def upload(
    transport: Transport,
    target: Target,
    descriptor: Descriptor,
    store: ContentStore,
    *,
    mount_from: Sequence[str] = (),
    progress: ProgressFn | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    sleep: Sleep = default_sleep,
) -> str | None:
    """Put blob ``descriptor`` from ``store`` into the target repository.

    Returns the repository it was mounted from, or None when its bytes were sent.
    """
    report = progress or (lambda _: None)
    digest = str(descriptor.digest)
    backoff = transport.backoff
    for attempt in range(backoff.attempts):
        try:
            location, mounted = await _start_upload(transport, target, digest, mount_from)
            if mounted is not None:
                return mounted
            await _send(transport, target, descriptor, store, location, report, chunk_size)
            return None
        except RegistryUnavailable:
            if attempt + 1 >= backoff.attempts:
                raise
            await sleep(backoff.wait_for(attempt))
            mount_from = ()  # the mount was answered already; just send the bytes
    raise AssertionError("unreachable")


async def _start_upload(
    transport: Transport, target: Target, digest: str, mount_from: Sequence[str]
) -> tuple[URL, str | None]:
    """The upload's URL, or (for a mount the registry made) the source repository."""
    path = f"/v2/{target.repository}/blobs/uploads/"
    scopes = [repository_scope(target.repository, "pull", "push")]
    source = next((repo for repo in reversed(mount_from) if repo != target.repository), None)
    params: dict[str, str] = {}
    if source is not None:
        params = {"mount": digest, "from": source}
        scopes.append(repository_scope(source, "pull"))
    response = await transport.request("POST", target.host, path, scopes=scopes, params=params)
    async with response:
        body = await response.content.read(64 * 1024)
        if source is not None and response.status == 201:
            return URL(), source
        if response.status != 202:
            raise error_for_status(response.status, _what(target, digest), body)
        return _location(transport, target, response, digest), None


def _location(
    transport: Transport, target: Target, response: aiohttp.ClientResponse, digest: str
) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise RegistryRejected(f"{_what(target, digest)}: the registry gave no upload location")
    return transport.url(target.host, location)


async def _send(
    transport: Transport,
    target: Target,
    descriptor: Descriptor,
    store: ContentStore,
    location: URL,
    report: ProgressFn,
    chunk_size: int,
) -> None:
    digest = str(descriptor.digest)
    size = descriptor.size
    scopes = [repository_scope(target.repository, "pull", "push")]
    what = _what(target, digest)
    sent = _Sent(digest, size, report)
    start = 0
    if size > chunk_size:
        while start < size:
            end = min(start + chunk_size, size)
            response = await transport.request(
                "PATCH",
                target.host,
                location,
                scopes=scopes,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{end - 1}",
                    "Content-Length": str(end - start),
                },
                body=_file_body(store, digest, start, end - start, sent),
                retry=False,
            )
            async with response:
                body = await response.content.read(64 * 1024)
                if response.status != 202:
                    raise error_for_status(response.status, what, body)
                location = _location(transport, target, response, digest)
            start = end
    final = location.update_query({"digest": digest})
    remaining = size - start
    response = await transport.request(
        "PUT",
        target.host,
        final,
        scopes=scopes,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(remaining)},
        body=_file_body(store, digest, start, remaining, sent) if remaining else b"",
        retry=False,
    )
    async with response:
        body = await response.content.read(64 * 1024)
        if response.status not in (201, 204):
            raise error_for_status(response.status, what, body)
        stated = response.headers.get("Docker-Content-Digest")
    if stated and stated != digest:
        raise DigestMismatch(f"{what}: the registry stored the blob as {stated}")


class _Sent:
    """Counts the bytes handed to the connection, for the ``pushing`` reports."""

    def __init__(self, digest: str, total: int, report: ProgressFn) -> None:
        self.digest = digest
        self.total = total
        self.count = 0
        self._report = report
        self._throttle = Throttle(total)

    def add(self, n: int) -> None:
        self.count += n
        if self._throttle.due(self.count) or self.count == self.total:
            self._report(Progress("pushing", self.digest, self.count, self.total))


def _file_body(
    store: ContentStore, digest: str, start: int, length: int, sent: _Sent
) -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(store.reader, digest)
        try:
            await asyncio.to_thread(f.seek, start)
            left = length
            while left:
                chunk = await asyncio.to_thread(f.read, min(_WRITE_SIZE, left))
                if not chunk:
                    raise RegistryRejected(f"blob {digest}: shorter in the store than {length}")
                left -= len(chunk)
                sent.add(len(chunk))
                yield chunk
        finally:
            f.close()

    return chunks
