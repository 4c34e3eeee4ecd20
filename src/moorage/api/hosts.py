"""Where the daemon listens by default, for the server and for clients."""

from moorage.engine.config import DEFAULT_EXEC_ROOT, DEFAULT_HOST, DEFAULT_ROOT, socket_path_of

__all__ = ["DEFAULT_EXEC_ROOT", "DEFAULT_HOST", "DEFAULT_ROOT", "socket_path_of"]
