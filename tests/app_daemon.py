"""The daemon's aiohttp app (``build_app``) over a fake engine, on a unix socket, its
event loop in a thread of its own: for route and CLI tests that need no real engine."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from moorage.api.docker.server import build_app

WAIT = 30.0


class AppDaemon:
    def __init__(self, engine: Any, path: Path) -> None:
        self.path = str(path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(build_app(engine), access_log=None, shutdown_timeout=1.0)
        self._call(self._start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.UnixSite(self.runner, self.path).start()

    def close(self) -> None:
        self._call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()
