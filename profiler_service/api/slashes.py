"""The trailing-slash redirect, with a relative ``location``.

Starlette's own redirect builds an absolute URL from the request's ``Host`` header, which the client
chooses: ``Host: evil.example`` came back as ``location: http://evil.example/v1/jobs``, a redirect any
cache or proxy in front of the service would hand to others. A path is all a redirect here needs.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import Receive, Scope, Send


class RelativeSlashRedirect:
    """The router's fallback (``Router.default``, with ``redirect_slashes`` off): a path that matches a
    route once its trailing slash is added or dropped gets a 307 to that path; anything else, the 404."""

    def __init__(self, router: Router):
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._target(scope) if scope["type"] == "http" else None
        if target is None:
            await self.router.not_found(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        location = scope.get("root_path", "") + target + (f"?{query}" if query else "")
        await RedirectResponse(location, status_code=307)(scope, receive, send)

    def _target(self, scope: Scope) -> str | None:
        path = scope["path"]
        if path == "/":
            return None
        target = path.rstrip("/") if path.endswith("/") else path + "/"
        # "//host" or "/\host" is a link to another host for a browser: never a location of ours
        if not target or target.startswith(("//", "/\\")):
            return None
        moved = {**scope, "path": target}
        if any(route.matches(moved)[0] is not Match.NONE for route in self.router.routes):
            return target
        return None
