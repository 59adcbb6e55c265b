"""URLs of a user's servers built from a link's path: what the console's link handling and
the dispatcher's redirect of the unnamed server share (hpchub.console.links says where a
link goes). A leaf: imports nothing of hpchub.

A link's path and query are only ever appended below ``/user/<name>/<server>/``, so a link
cannot send anyone elsewhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlencode

# Characters RFC 3986 allows unencoded in a path (besides letters and digits).
_PATH_SAFE = "/-._~!$&'()*+,;=:@"


def link_rest(path: str, query: str = "") -> str:
    """A link's path (decoded, as the router gives it) and raw query, as the part of a URL
    that follows a server's prefix: "." and ".." segments and empty ones dropped."""
    segments = [s for s in path.split("/") if s not in ("", ".", "..")]
    rest = quote("/".join(segments), safe=_PATH_SAFE)
    if segments and path.endswith("/"):
        rest += "/"
    return rest + (f"?{query}" if query else "")


def open_url(base_url: str, user_escaped: str, server: str, rest: str) -> str:
    return f"{base_url}user/{user_escaped}/{server}/{rest}"


def with_next(url: str, next_url: str) -> str:
    return f"{url}?{urlencode({'next': next_url})}"


def unnamed_server_target(base_url: str, user: Any, next_url: str) -> str:
    """Where JupyterHub's spawn page for the unnamed server sends the browser: the console,
    with the path of ``next`` (``/user/<name>/<path>``, or the hub's own
    ``/hub/user/<name>/<path>`` behind "Launch server") kept."""
    escaped = quote(user.name, safe="")
    for prefix in (f"{base_url}user/{escaped}/", f"{base_url}hub/user/{escaped}/"):
        if next_url.startswith(prefix):
            path, _, query = next_url[len(prefix) :].partition("?")
            rest = link_rest(unquote(path), query)
            if rest:
                return f"{base_url}hub/console/open/{rest}"
    return f"{base_url}hub/home"
