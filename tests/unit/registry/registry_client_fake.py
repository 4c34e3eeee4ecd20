"""A small in-process OCI registry for the client's unit tests: blobs and manifests in
dicts, with switches to cut, tamper with or mis-serve downloads, and a log of requests."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.repos: dict[str, set[str]] = {}  # repository -> digests it holds
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []
        # Cut the next blob body longer than this after this many bytes.
        self.cut_at: int | None = None
        self.ignore_range = False
        self.tamper = False  # change a byte in every blob body of 1 MiB or more
        self.manifest_headers: dict[str, str] = {}
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/v2/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def __aenter__(self) -> FakeRegistry:
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    # --- content -----------------------------------------------------------------------

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        self.blobs[digest] = data
        self.repos.setdefault(repo, set()).add(digest)
        return digest

    def add_manifest(self, repo: str, refs: list[str], media_type: str, raw: bytes) -> str:
        digest = digest_of(raw)
        for ref in [*refs, digest]:
            self.manifests[(repo, ref)] = (media_type, raw)
        return digest

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for m, p, _ in self.log if m == method and contains in p)

    # --- the API -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.log.append((request.method, request.path_qs, dict(request.headers)))
        tail = request.match_info["tail"]
        if tail == "":
            return web.json_response({})
        if "/manifests/" in tail:
            repo, _, ref = tail.rpartition("/manifests/")
            return await self._manifest(request, repo, ref)
        if "/blobs/uploads" in tail:
            repo, _, upload = tail.partition("/blobs/uploads")
            return await self._upload(request, repo, upload.strip("/"))
        if "/blobs/" in tail:
            repo, _, digest = tail.rpartition("/blobs/")
            return await self._blob(request, repo, digest)
        return web.json_response({"errors": [{"code": "UNSUPPORTED"}]}, status=404)

    async def _manifest(self, request: web.Request, repo: str, ref: str) -> web.StreamResponse:
        if request.method == "PUT":
            raw = await request.read()
            digest = self.add_manifest(repo, [ref], request.content_type, raw)
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        found = self.manifests.get((repo, ref))
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        media_type, raw = found
        headers = {"Docker-Content-Digest": digest_of(raw), **self.manifest_headers}
        return web.Response(body=raw, content_type=media_type, headers=headers)

    async def _blob(self, request: web.Request, repo: str, digest: str) -> web.StreamResponse:
        data = self.blobs.get(digest)
        if data is None or digest not in self.repos.get(repo, set()):
            return _error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(data))})
        start = 0
        status = 200
        headers: dict[str, str] = {}
        range_header = request.headers.get("Range", "")
        if range_header.startswith("bytes=") and not self.ignore_range:
            start = int(range_header[6:].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if self.tamper and len(body) >= 1 << 20:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        if self.cut_at is not None and len(body) > self.cut_at:
            cut, self.cut_at = self.cut_at, None
            await response.write(body[:cut])
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(body)
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request, repo: str, upload: str) -> web.StreamResponse:
        if request.method == "POST":
            mount, source = request.query.get("mount"), request.query.get("from")
            if mount and source and mount in self.repos.get(source, set()):
                self.repos.setdefault(repo, set()).add(mount)
                return web.Response(status=201, headers={"Docker-Content-Digest": mount})
            uid = uuid.uuid4().hex
            self.uploads[uid] = bytearray()
            return web.Response(
                status=202, headers={"Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=s"}
            )
        buffer = self.uploads.get(upload)
        if buffer is None:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
        data = await request.read()
        if request.method == "PATCH":
            content_range = request.headers.get("Content-Range")
            if content_range is not None and int(content_range.split("-")[0]) != len(buffer):
                return _error(416, "BLOB_UPLOAD_INVALID", "out of order")
            buffer += data
            return web.Response(
                status=202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}?_state=t"}
            )
        if request.method == "PUT":
            buffer += data
            digest = request.query.get("digest", "")
            if digest_of(bytes(buffer)) != digest:
                return _error(400, "DIGEST_INVALID", "provided digest did not match")
            del self.uploads[upload]
            self.add_blob(repo, bytes(buffer))
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        return _error(405, "UNSUPPORTED", "unsupported")


def _error(status: int, code: str, message: str) -> web.Response:
    body: dict[str, Any] = {"errors": [{"code": code, "message": message}]}
    return web.json_response(body, status=status)
