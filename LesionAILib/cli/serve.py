"""``lesionai serve``: the browser reading page (the Slicer module's scene logic on trame-slicer), started lazily.

The engine never imports slicer, vtk or trame: the server lives on the Slicer-logic side
(``LesionAI/LesionAIWeb`` of a source checkout, next to ``LesionAILogic``) and is imported only when
the command runs; without it, or without trame-slicer, the command ends with one line saying what to install.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError


def register(commands: argparse._SubParsersAction) -> None:
    serve = options.add_command(
        commands,
        "serve",
        run_serve,
        help="serve the reading page to browsers (study list, analyze, heatmaps, candidate table)",
        description="Serve the LesionAI reading page: the studies under --studies with their roles, T2/ADC/high-b "
        "views with heatmaps, Analyze with progress and Cancel, the candidate table, point and classify, and a "
        "download of each result folder. Every browser session gets its own scene in its own process. Binds to "
        "127.0.0.1 unless --host says otherwise; the address printed at start carries the access token.",
    )
    serve.add_argument("--studies", required=True, metavar="DIR", help="folder holding the studies (read only)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--work", metavar="DIR", help="results, session folders, access log (default: user cache)")
    serve.add_argument("--token", help="access token (default: a new random one, printed at start)")
    serve.add_argument("--store", metavar="DIR", help="model store whose active version analyses (default "
                       "$LESIONAI_HOME/models; the bundled demo model when it has none)")
    serve.add_argument("--max-sessions", type=int, default=4, help="browser sessions at once (default 4)")
    serve.add_argument("--idle-timeout", type=int, default=300, metavar="S",
                       help="end a session S seconds after its last browser tab closed (default 300)")
    serve.add_argument("--spare-sessions", type=int, default=1, metavar="N",
                       help="session processes kept started ahead of browsers (default 1; each holds memory)")
    options.add_device_option(serve)


INSTALL_HINT = "install the browser extra in a source checkout: pip install -e '.[mrml]'"


def _web_package():
    """Import ``LesionAIWeb`` (and check trame-slicer), finding it in a source checkout or a Slicer module folder."""
    engine_parent = Path(__file__).resolve().parents[2]
    if importlib.util.find_spec("LesionAIWeb") is None:
        for folder in (engine_parent / "LesionAI", engine_parent):
            if (folder / "LesionAIWeb" / "__init__.py").is_file():
                sys.path.insert(0, str(folder))
                break
        else:
            raise LesionAIError("lesionai serve needs the LesionAI module folder (LesionAIWeb)", hint=INSTALL_HINT)
    for module in ("trame_slicer", "aiohttp"):
        if importlib.util.find_spec(module) is None:
            raise LesionAIError(f"lesionai serve needs {module.replace('_', '-')}", hint=INSTALL_HINT)
    return importlib.import_module("LesionAIWeb.serve")


def run_serve(args) -> int:
    if args.max_sessions < 1 or args.idle_timeout < 1 or args.spare_sessions < 0:
        raise LesionAIError("--max-sessions and --idle-timeout must be at least 1, --spare-sessions at least 0")
    serving = _web_package()
    return serving.serve(
        serving.ServeOptions(
            studies=args.studies, host=args.host, port=args.port, work=args.work, token=args.token,
            store=args.store, device=args.device, max_sessions=args.max_sessions, idle_timeout_s=args.idle_timeout,
            spare_sessions=args.spare_sessions,
        )
    )
