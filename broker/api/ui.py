"""GET /ui: the ops page, plain HTML + JavaScript modules + CSS from broker/ui/ (no build step). The page
is static; everything it shows comes from the JSON APIs with the token the user typed, so serving it
needs no auth. A strict Content-Security-Policy backs up the page's rule of never using innerHTML."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

routes = web.RouteTableDef()

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _asset(name: str) -> web.Response:
    path = (UI_DIR / name).resolve()
    if path.parent != UI_DIR or not path.is_file() or path.suffix not in CONTENT_TYPES:
        raise web.HTTPNotFound()
    # Short cache: the files change only with the broker's version, and ops want a fix on the next load.
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "Content-Type": CONTENT_TYPES[path.suffix]}
    return web.Response(body=path.read_bytes(), headers=headers)


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")


@routes.get("/ui")
async def page(request: web.Request) -> web.Response:
    return _asset("index.html")


@routes.get("/ui/")
async def page_slash(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")


@routes.get(r"/ui/{name:[A-Za-z0-9_-]+\.(?:js|css|svg)}")
async def asset(request: web.Request) -> web.Response:
    return _asset(request.match_info["name"])
