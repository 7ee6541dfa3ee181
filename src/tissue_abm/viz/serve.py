"""Start the browser view: `solara run` on the page in `app.py`, on 127.0.0.1, offline.

Solara's front-end files (Vue, Vuetify, fonts, require.js, the grid layout) are served from the
`solara-assets` package, which fills Solara's asset-proxy cache (`<prefix>/share/solara/cdn`), so
the browser fetches everything from the local server and the server never asks a CDN.

The server is this module run as a program (`main`): `solara run` with Solara's web application
wrapped in `OriginGuard`, which refuses requests and WebSocket connections from another origin
(any other web page the user opens could otherwise drive the view) and with another Host (DNS
rebinding). Solara and Starlette offer no such check for WebSockets (CORS does not cover them).
On Linux the server process is killed when its parent, `tissue-abm viz`, ends in any way
(`prctl(PR_SET_PDEATHSIG)`), so it never keeps the port after its parent is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

APP = Path(__file__).with_name("app.py")
"""The page (a module with a `page` object), as `solara run` wants it."""

SCENARIO_ENV = "TISSUE_ABM_VIZ_SCENARIO"
"""Environment variable naming the scenario file the page starts with (absolute path)."""

HOST = "127.0.0.1"
DEFAULT_PORT = 8765


SOLARA_APP = "solara.server.starlette:app"
"""The ASGI application `solara run` serves (wrapped in `OriginGuard` by `main`)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


def server_command(port: int = DEFAULT_PORT, host: str = HOST) -> list[str]:
    """The command that starts the Solara server on the page (production mode, no browser).

    It is `solara run` with its arguments, run through `main` of this module.
    """
    return [
        sys.executable,
        "-m",
        "tissue_abm.viz.serve",
        "run",
        str(APP),
        "--host",
        host,
        "--port",
        str(port),
        "--production",
        "--no-open",
    ]


def server_environment(scenario: Path | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: `base` with the scenario and the offline settings.

    Front-end files come from Solara's local asset-proxy cache (filled by `solara-assets`);
    telemetry and Solara's banner are off; the cookie warning Solara gives for 127.0.0.1 (not
    "localhost") is muted.

    Args:
        scenario: Scenario file the page starts with (None: the untreated defaults).
        base: Environment to start from (default: this process's).
    """
    env = dict(os.environ if base is None else base)
    env.pop(SCENARIO_ENV, None)
    if scenario is not None:
        env[SCENARIO_ENV] = str(Path(scenario).resolve())
    env.setdefault("SOLARA_ASSETS_PROXY", "true")
    env.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "false")
    env.setdefault("SOLARA_THEME_SHOW_BANNER", "false")
    env.setdefault("SOLARA_THEME_TITLE", "tissue-abm")
    quiet = "ignore:Cookies with samesite=none require https:UserWarning"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet]))
    return env


def start_server(
    scenario: Path | None, port: int = DEFAULT_PORT, host: str = HOST, **popen: object
) -> subprocess.Popen:
    """Start the server process and return it (it runs until stopped, or its parent ends).

    Args:
        scenario: Scenario file the page starts with (None: the untreated defaults).
        port: TCP port.
        host: Address to listen on.
        **popen: Further arguments of `subprocess.Popen` (e.g. `stdout`).
    """
    if sys.platform == "linux" and "preexec_fn" not in popen:
        popen["preexec_fn"] = _die_with(os.getpid())
    return subprocess.Popen(server_command(port, host), env=server_environment(scenario), **popen)  # type: ignore[call-overload]


def _die_with(parent: int) -> Callable[[], None]:
    """For `preexec_fn` (Linux): the child gets SIGKILL when the process `parent` ends."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    set_death_signal = 1  # PR_SET_PDEATHSIG

    def arm() -> None:
        prctl(set_death_signal, signal.SIGKILL)
        if os.getppid() != parent:  # the parent ended before the death signal was armed
            os._exit(1)

    return arm


class OriginGuard:
    """ASGI middleware: only this server's own pages may talk to it.

    An HTTP request or WebSocket connection whose `Origin` header names another origin, or
    whose `Host` header is not the server's own address, is refused (HTTP 403; a WebSocket is
    closed before it is accepted, which the server answers with 403). Requests without an
    `Origin` (a browser's navigation, `curl`) pass.

    Args:
        app: The application to guard.
        host: The address the server listens on.
        port: Its port.
    """

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        names = {host, "127.0.0.1", "localhost"}
        self.hosts = {f"{name}:{port}" for name in names}
        self.origins = {f"http://{name}" for name in self.hosts}

    def allowed(self, headers: dict[bytes, bytes]) -> bool:
        """Whether a request with these headers (lower-case names) comes from this server."""
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin")
        return host in self.hosts and (origin is None or origin.decode("latin-1") in self.origins)

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        """Pass the request on, or refuse it."""
        if scope["type"] in ("http", "websocket") and not self.allowed(
            {name.lower(): value for name, value in scope.get("headers", [])}
        ):
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"forbidden: another origin\n"})
            return
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> None:
    """The server process: `solara run ARGV`, its application behind `OriginGuard`.

    The application is wrapped where uvicorn loads it (`uvicorn.config.import_from_string`),
    so Solara imports and configures it exactly as under `solara run`.
    """
    args = sys.argv[1:] if argv is None else argv
    host = args[args.index("--host") + 1] if "--host" in args else HOST
    port = int(args[args.index("--port") + 1]) if "--port" in args else DEFAULT_PORT
    import uvicorn.config
    from solara.__main__ import main as solara_main

    load = uvicorn.config.import_from_string

    def guarded(import_str: Any) -> Any:
        app = load(import_str)
        return OriginGuard(app, host, port) if import_str == SOLARA_APP else app

    uvicorn.config.import_from_string = guarded
    sys.argv = ["solara", *args]
    solara_main()


if __name__ == "__main__":
    main()
