"""``GET /debug/vars``: what the daemon holds, to find what a client left behind.

dockerd serves Go's expvar at this path (and, from API 1.48, under ``/v1.xx`` too).
Here it is the daemon's command line, its number of asyncio tasks, and its threads
by kind: ``engine`` is the pool of workers that run engine calls (started on demand,
kept idle), the others are threads of one job each (a log follower, an exec's wait)::

    {"cmdline": ["moor", "daemon"], "tasks": 3, "threads": {"MainThread": 1, "engine": 4}}
"""

from __future__ import annotations

import asyncio
import collections
import re
import sys
import threading

from aiohttp import web

from moorage.api.docker.server import Routes, json_response

routes = Routes()


def _kind(name: str) -> str:
    """A thread's name without its number: ``engine_3`` is an ``engine`` thread."""
    return re.sub(r"[_-]\d+", "", name)


@routes.add("GET", "/debug/vars")
async def debug_vars(request: web.Request) -> web.StreamResponse:
    threads = collections.Counter(_kind(t.name) for t in threading.enumerate())
    return json_response(
        {
            "cmdline": sys.argv,
            "tasks": len(asyncio.all_tasks()),
            "threads": dict(sorted(threads.items())),
        }
    )
