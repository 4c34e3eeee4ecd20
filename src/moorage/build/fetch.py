"""Downloads for ``ADD <url>``: http and https, streamed to a file, verified.

The file is named after the URL's last path segment (``index.html`` for none, as
Docker does) and gets the server's ``Last-Modified`` time when it sends one. A
``--checksum`` (``sha256:<hex>``) must match what arrived, or nothing is kept.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import re
import urllib.error
import urllib.parse
import urllib.request

from moorage.errors import InvalidArgument, NotFound, Unavailable

__all__ = ["download"]

_CHUNK = 1 << 20
_TIMEOUT = 60.0
_CHECKSUM = re.compile(r"sha256:([0-9a-f]{64})")


def download(url: str, folder: str, *, checksum: str | None = None) -> str:
    """Fetch ``url`` into ``folder``; the file's name there."""
    want = None
    if checksum is not None:
        match = _CHECKSUM.fullmatch(checksum)
        if match is None:
            raise InvalidArgument(f"invalid checksum {checksum}: want sha256:<64 hex digits>")
        want = match[1]
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidArgument(f"{url}: not an http or https URL")
    name = posixpath.basename(urllib.parse.unquote(parsed.path)) or "index.html"
    if name in (".", "..") or "/" in name or "\0" in name:
        name = "index.html"
    path = os.path.join(folder, name)
    request = urllib.request.Request(url, headers={"User-Agent": "moorage-build"})
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310 - http(s) only, checked above
            modified = response.headers.get("Last-Modified")
            with open(path, "xb") as out:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response, and so the connection
        if exc.code == 404:
            raise NotFound(f"{url}: not found (HTTP 404)") from None
        raise Unavailable(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"{url}: {reason}") from None
    if want is not None and digest.hexdigest() != want:
        os.unlink(path)
        raise InvalidArgument(
            f"{url}: checksum mismatch: expected sha256:{want}, got sha256:{digest.hexdigest()}"
        )
    if modified:
        try:
            when = email.utils.parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            when = None
        if when is not None:
            os.utime(path, (when, when))
    return name
