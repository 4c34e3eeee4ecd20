"""Docker Engine API endpoints Moorage does not serve, answered as such.

Swarm mode (``/swarm``, ``/nodes``, ``/services``, ``/tasks``, ``/secrets``,
``/configs``), plugins and distribution inspect get a 501 whose message says that
Moorage does not support them, for every method and every path below them (but a
plugin's inspect: 404, as dockerd answers for a plugin it does not have). dockerd
answers swarm requests on a node outside a swarm with 503 "This node is not a swarm
manager. Use "docker swarm init" ..."; Moorage can never become one, so it says that
instead. (The BuildKit session endpoints, ``/session`` and ``/grpc``, are refused in
``build.py``.) A path that is no endpoint at all is a 404 ``page not found``
(``server.py``).
"""

from __future__ import annotations

from aiohttp import web

from moorage.api.docker.server import Handler, Routes
from moorage.errors import NotFound, NotSupported

routes = Routes()

# path prefix -> what the client asked for, as the refusal names it
_FEATURES = {
    "/swarm": "swarm mode",
    "/nodes": "swarm mode (nodes)",
    "/services": "swarm mode (services)",
    "/tasks": "swarm mode (tasks)",
    "/secrets": "swarm mode (secrets)",
    "/configs": "swarm mode (configs)",
    "/plugins": "plugins",
    "/distribution": "distribution inspect",
}


def _refusal(feature: str) -> Handler:
    async def refuse(request: web.Request) -> web.StreamResponse:
        version = request.match_info.get("version")
        path = request.path.removeprefix(f"/v{version}") if version else request.path
        raise NotSupported(f"Moorage does not support {feature}: {request.method} {path}")

    return refuse


@routes.add("GET", "/plugins/{name:.+}/json")
async def inspect_plugin(request: web.Request) -> web.StreamResponse:
    # As dockerd with no plugin of that name: `docker inspect NAME` tries every kind of
    # object and says "No such object" only when each answered "not found".
    raise NotFound(f'plugin "{request.match_info["name"]}" not found')


for _prefix, _feature in _FEATURES.items():
    if _prefix == "/distribution":
        routes.add("*", "/distribution/{name:.+}/json")(_refusal(_feature))
        continue
    routes.add("*", _prefix)(_refusal(_feature))
    routes.add("*", _prefix + "/{rest:.*}")(_refusal(_feature))
