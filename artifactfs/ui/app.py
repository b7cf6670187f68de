"""The web view's ASGI app (starlette): read-only pages rendered on the server with jinja2 and the same
data as JSON under `/api/...`. Endpoints are plain functions, which starlette runs in worker threads,
so store reads never block the event loop. Nothing here writes to the store."""

import hmac
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import lineage
from ..client import Client
from ..config import format_size
from ..errors import ArtifactfsError, CorruptData, NotFound, PermissionDenied, StoreUnavailable, UsageError
from ..manifest import LINK
from ..names import ArtifactName
from . import graph
from .catalog import Catalog, artifact_name, entry_json, ref_of
from .download import download
from .preview import preview

log = logging.getLogger(__name__)

HERE = os.path.dirname(__file__)
TOKEN_COOKIE = "artifactfs_token"
TOKEN_HEADER = "x-artifactfs-token"
MAX_DEPTH = 10
SECURITY_HEADERS = [
    # scripts, styles and images only from here (one script: the copy buttons); nothing frames them
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
ERRORS: list[tuple[type, int]] = [(NotFound, 404), (UsageError, 400), (PermissionDenied, 403),
                                  (StoreUnavailable, 503), (CorruptData, 502), (ArtifactfsError, 500)]


# ---- how things are spelled in URLs and on pages ------------------------------------------------
def q(path: str) -> str:
    return urllib.parse.quote(path, safe="/")


def artifact_url(artifact: str) -> str:
    return "/e/" + q(artifact)


def version_url(artifact: str, selector: str, view: str = "tree", path: str = "") -> str:
    """A version's page: `tree` (a directory), `file` (a preview), `raw` (the bytes) or `lineage`."""
    tail = "" if view == "lineage" else "/" + q(path)
    return f"/e/{q(artifact)}/{q(selector)}/{view}{tail}"


def exact_version_url(ref: str, view: str = "tree") -> str:
    """The page of `e/p/n:vN` (as lineage names versions)."""
    artifact, _, selector = ref.rpartition(":")
    return version_url(artifact, selector, view)


def when(value: str | float | None) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, int | float):
        if value == float("inf"):
            return "never"
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = str(value)
    return text[:19].replace("T", " ") + " UTC" if text.endswith("Z") else text


def pretty(value, indent: int | None = 2) -> str:
    """JSON as text (the page escapes it like any text)."""
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False)


def folded(value) -> str:
    """What a nested metadata value holds, in a few words (its JSON is one click away)."""
    if isinstance(value, dict):
        return f"{{{len(value)} key{'' if len(value) == 1 else 's'}}}"
    return f"[{len(value)} item{'' if len(value) == 1 else 's'}]"


def size(value) -> str:
    return "-" if value is None else format_size(value)


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters.update(size=size, when=when, q=q, pretty=pretty, folded=folded)
    env.globals.update(artifact_url=artifact_url, version_url=version_url, exact_version_url=exact_version_url)
    return env


# ---- the app -------------------------------------------------------------------------------------
class Pages:
    """Each page once: `data(request)` gives its dict, served as HTML through its template or as JSON."""

    def __init__(self, client: Client):
        self.client = client
        self.catalog = Catalog(client)
        self.env = templates()

    def render(self, template: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(template).render(**context), status_code=status)

    def route(self, path: str, template: str, data: Callable[[Request], dict]) -> list[Route]:
        def page(request: Request) -> Response:
            return self.render(template, **data(request), request=request)

        def api(request: Request) -> Response:
            return JSONResponse(_jsonable(data(request)))

        return [Route(path, page), Route("/api" + path, api)]

    # ---- page data ---------------------------------------------------------------------------
    def home(self, request: Request) -> dict:
        return self.catalog.home()

    def search(self, request: Request) -> dict:
        return self.catalog.search(request.query_params.get("q", ""))

    def entity(self, request: Request) -> dict:
        return self.catalog.projects(request.path_params["entity"])

    def project(self, request: Request) -> dict:
        p = request.path_params
        return self.catalog.artifacts(p["entity"], p["project"], _int(request, "page", 1))

    def artifact(self, request: Request) -> dict:
        return self.catalog.artifact(_name(request), _int(request, "page", 1))

    def diff(self, request: Request) -> dict:
        name = _name(request)
        old, new = request.query_params.get("from", ""), request.query_params.get("to", "")
        if not old or not new:
            raise UsageError("a diff needs two versions: ?from=vN&to=vM")
        return self.catalog.diff(name, old, new, request.query_params.get("after", ""))

    def tree(self, request: Request) -> dict:
        start = _int(request, "start", 0)
        return self.catalog.version(_ref(request), request.path_params["path"], start or None)

    def file(self, request: Request) -> dict:
        record, entry, chunk_size = self.catalog.file(_ref(request), request.path_params["path"])
        return {**self.catalog.version_head(record), "selector": request.path_params["selector"],
                "entry": entry_json(entry), "preview": preview(self.client.fetcher, entry, chunk_size)}

    def lineage(self, request: Request) -> dict:
        depth = _int(request, "depth", 2)
        if not 0 <= depth <= MAX_DEPTH:
            raise UsageError(f"depth must be between 0 and {MAX_DEPTH}")
        data = self.catalog.lineage(_ref(request), depth)
        shape = graph.build(data["lineage"], exact_version_url, lambda run: "/run/" + q(run))
        data["nodes"] = [{"id": n.id, "label": n.label, "kind": n.kind, "type": n.type} for n in shape.nodes.values()]
        data["svg"] = graph.render(shape)
        return data

    def run(self, request: Request) -> dict:
        run = request.path_params["run"]
        return {"run": run, "inputs": lineage.run_inputs(self.client.repo, run),
                "outputs": lineage.run_outputs(self.client.repo, run)}

    def raw(self, request: Request) -> Response:
        record, entry, chunk_size = self.catalog.file(_ref(request), request.path_params["path"])
        if entry.kind == LINK:
            raise NotFound(f"{record.ref} {entry.path} is a symbolic link to {entry.target}")
        return download(self.client.fetcher, entry, chunk_size, request.headers.get("range"))

    def version_root(self, request: Request) -> Response:
        p = request.path_params
        ref_of(_name(request), p["selector"])  # a bad selector is a 400, not a redirect to one
        return RedirectResponse(version_url(f"{p['entity']}/{p['project']}/{p['name']}", p["selector"]))

    # ---- errors ------------------------------------------------------------------------------
    def error(self, request: Request, exc: Exception) -> Response:
        status, message = _status(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, message)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return self.render("error.html", status=status, status_code=status, message=message, request=request)


def _status(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    for kind, status in ERRORS:
        if isinstance(exc, kind):
            return status, str(exc)
    return 500, f"internal error ({type(exc).__name__}); the server log has the details"


def _jsonable(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "svg"} if "svg" in data else data


def _int(request: Request, key: str, default: int) -> int:
    text = request.query_params.get(key)
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,12}", text):  # ASCII digits: str.isdigit admits "²", which int() refuses
        raise UsageError(f"{key} must be a number, not {text[:40]!r}")
    return int(text)


def _name(request: Request) -> ArtifactName:
    p = request.path_params
    return artifact_name(p["entity"], p["project"], p["name"])


def _ref(request: Request):
    return ref_of(_name(request), request.path_params["selector"])


def host_of(header: str) -> str:
    """The host of a Host header, without its port: `[::1]:8000` -> `::1`, `localhost:8000` -> `localhost`."""
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: the security headers on every response; only the Host headers in `hosts` (unless
    "*"), so a page of another site whose name resolves to the loopback address (DNS rebinding) gets
    nothing, IPv6 literals included; and, when a token is set, refuses any request that does not carry
    it (header, cookie, or `?token=` once, which sets the cookie)."""

    def __init__(self, app: Starlette, token: str | None, pages: Pages, hosts: tuple[str, ...] = ("*",)):
        self.app, self.token, self.pages = app, token, pages
        self.hosts = None if "*" in hosts else {h.lower() for h in hosts}

    def close(self) -> None:
        self.pages.catalog.close()

    def _carries(self, request: Request) -> bool:
        given = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = given or auth[7:]
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        started = time.perf_counter()

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                own = {k for k, _ in headers}  # a download sets its own, stricter policy
                # the server's time to the first byte, for browsers' devtools and bench_ui
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = headers + [(k, v) for k, v in SECURITY_HEADERS if k not in own] + [
                    (b"server-timing", took)]
            await send(message)

        if self.hosts is not None:
            header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host_of(header).lower() not in self.hosts:
                return await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, with_headers)
        if self.token is not None:
            request = Request(scope)
            if not self._carries(request):
                offered = request.query_params.get("token", "")
                if offered and hmac.compare_digest(offered.encode(), self.token.encode()):
                    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                    target = request.url.path + (f"?{urllib.parse.urlencode(rest)}" if rest else "")
                    response: Response = RedirectResponse(target, status_code=303)
                    response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
                else:
                    response = JSONResponse({"error": "this view needs its token: open the URL `artifactfs ui` "
                                                      "printed, or send the X-Artifactfs-Token header",
                                             "status": 401}, status_code=401)
                return await response(scope, receive, with_headers)
        await self.app(scope, receive, with_headers)


def create_app(client: Client, token: str | None = None,
               hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Guard:
    """The web view over `client`'s store. `token`: required on every request when set. `hosts`: the
    Host headers answered (a page of another site that resolves its name to 127.0.0.1 gets nothing)."""
    pages = Pages(client)
    art = "/e/{entity}/{project}/{name}"
    version = art + "/{selector}"
    routes = [
        *pages.route("/", "home.html", pages.home),
        *pages.route("/search", "search.html", pages.search),
        *pages.route("/e/{entity}", "entity.html", pages.entity),
        *pages.route("/e/{entity}/{project}", "project.html", pages.project),
        *pages.route(art, "artifact.html", pages.artifact),
        *pages.route(art + "/-/diff", "diff.html", pages.diff),
        *pages.route(version + "/tree/{path:path}", "version.html", pages.tree),
        *pages.route(version + "/file/{path:path}", "file.html", pages.file),
        *pages.route(version + "/lineage", "lineage.html", pages.lineage),
        *pages.route("/run/{run}", "run.html", pages.run),
        Route(version + "/raw/{path:path}", pages.raw),
        Route(version, pages.version_root),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    app = Starlette(routes=routes,
                    # an ArtifactfsError is an answer (404, 400, 503...); any other exception is also logged
                    exception_handlers={ArtifactfsError: pages.error, HTTPException: pages.error,
                                        Exception: pages.error})
    return Guard(app, token, pages, hosts)

