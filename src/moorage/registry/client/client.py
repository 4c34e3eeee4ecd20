"""The registry client: pull, push and login checks against any OCI distribution registry.

::

    async with RegistryClient(insecure=["myreg:5000"], credentials=store.get) as client:
        pulled = await client.pull(content, "busybox", protect=lease_it)
        await client.push(content, "myreg:5000/team/busybox:1", pulled.root)
        await client.check_login("myreg:5000")

One client holds one HTTP session and what it learnt about each registry (scheme,
authorization scheme, tokens); make one per operation or share one for a while.
The work itself is in :mod:`.pull`, :mod:`.push`, :mod:`.blobs` and
:mod:`.manifests`; this class puts their settings in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import aiohttp

from moorage.oci.descriptor import Descriptor
from moorage.oci.platform import Platform
from moorage.oci.reference import Reference
from moorage.registry.client import pull as _pull
from moorage.registry.client import push as _push
from moorage.registry.client.auth import CredentialsFor
from moorage.registry.client.backoff import DEFAULT_BACKOFF, Backoff, Sleep, default_sleep
from moorage.registry.client.blobs import DEFAULT_CHUNK_SIZE
from moorage.registry.client.errors import Unauthorized, error_for_status
from moorage.registry.client.manifests import Fetched, fetch_manifest
from moorage.registry.client.progress import ProgressFn, ignore
from moorage.registry.client.resolve import HostPolicy, Target, resolve
from moorage.registry.client.transport import Transport
from moorage.store.content import ContentStore

__all__ = ["RegistryClient"]


class RegistryClient:
    def __init__(
        self,
        *,
        insecure: Iterable[str] = (),
        credentials: CredentialsFor | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        concurrency: int = _pull.DEFAULT_CONCURRENCY,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = default_sleep,
    ) -> None:
        self.transport = Transport(
            HostPolicy(insecure), credentials, backoff=backoff, sleep=sleep, session=session
        )
        self.concurrency = concurrency
        self.chunk_size = chunk_size
        self._sleep = sleep

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    async def manifest(self, reference: str | Reference) -> Fetched:
        """The manifest or index ``reference`` names, checked (nothing is stored)."""
        return await fetch_manifest(self.transport, resolve(reference))

    async def pull(
        self,
        store: ContentStore,
        reference: str | Reference | Target,
        *,
        platform: Platform | None = None,
        progress: ProgressFn = ignore,
        protect: Callable[[str], None] | None = None,
        locks: _pull.KeyedLocks | None = None,
    ) -> _pull.PullResult:
        target = reference if isinstance(reference, Target) else resolve(reference)
        return await _pull.pull(
            self.transport,
            store,
            target,
            platform=platform,
            progress=progress,
            protect=protect,
            locks=locks,
            concurrency=self.concurrency,
            sleep=self._sleep,
        )

    async def push(
        self,
        store: ContentStore,
        reference: str | Reference | Target,
        root: Descriptor,
        *,
        progress: ProgressFn = ignore,
    ) -> _push.PushResult:
        target = reference if isinstance(reference, Target) else resolve(reference)
        return await _push.push(
            self.transport,
            store,
            target,
            root,
            progress=progress,
            concurrency=self.concurrency,
            chunk_size=self.chunk_size,
            sleep=self._sleep,
        )

    async def check_login(self, host: str) -> None:
        """Whether the registry takes our credentials for ``host``: ``GET /v2/`` with them.

        :class:`Unauthorized` when it does not. A registry that lets everybody in
        answers 200 whatever we send, as it does for docker.
        """
        response = await self.transport.request("GET", host, "/v2/")
        async with response:
            body = await response.content.read(64 * 1024)
            if response.status == 200:
                return
            if response.status == 401:
                raise Unauthorized(f"login to {host}: unauthorized: incorrect username or password")
            raise error_for_status(response.status, f"login to {host}", body)
