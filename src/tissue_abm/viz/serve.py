"""Start the browser view: `solara run` on the page in `app.py`, on 127.0.0.1, offline.

Solara's front-end files (Vue, Vuetify, fonts, require.js, the grid layout) are served from the
`solara-assets` package, which fills Solara's asset-proxy cache (`<prefix>/share/solara/cdn`), so
the browser fetches everything from the local server and the server never asks a CDN.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")
"""The page (a module with a `page` object), as `solara run` wants it."""

SCENARIO_ENV = "TISSUE_ABM_VIZ_SCENARIO"
"""Environment variable naming the scenario file the page starts with (absolute path)."""

HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def server_command(port: int = DEFAULT_PORT, host: str = HOST) -> list[str]:
    """The command that starts the Solara server on the page (production mode, no browser)."""
    return [
        sys.executable,
        "-m",
        "solara",
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
    """Start the server process and return it (it runs until stopped).

    Args:
        scenario: Scenario file the page starts with (None: the untreated defaults).
        port: TCP port.
        host: Address to listen on.
        **popen: Further arguments of `subprocess.Popen` (e.g. `stdout`).
    """
    return subprocess.Popen(server_command(port, host), env=server_environment(scenario), **popen)  # type: ignore[call-overload]
