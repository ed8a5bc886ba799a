"""The long-running commands: ``serve`` (the HTTP API), ``dashboard`` (Streamlit) and ``worker`` (Celery)."""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

from picmetric.interfaces.lan import lan_addresses
from picmetric.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="run a Celery worker for queued analyses (needs PICMETRIC_BROKER_URL)")
    worker.add_argument("--concurrency", type=int, help="processes, each with its own models, one job each (default 1)")
    worker.add_argument(
        "--threads",
        type=int,
        help="jobs one process runs at once over one model set (default 16: PICMETRIC_WORKER_THREADS)",
    )
    worker.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    worker.set_defaults(func=cmd_worker)

    dashboard = commands.add_parser("dashboard", help="run the Streamlit dashboard")
    dashboard.add_argument("--host", default="localhost")
    dashboard.add_argument(
        "--lan", nargs="?", const="", metavar="ADDRESS",
        help="listen on the network so phones can join the class board, and print the address they use (this "
        "machine's own, or ADDRESS when it has several)",
    )  # fmt: skip
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.epilog = "Any further flags are Streamlit's own (streamlit run --help), e.g. --server.headless true."
    dashboard.set_defaults(func=cmd_dashboard)

    serve = commands.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes; each loads the models once")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(func=cmd_serve)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from picmetric.interfaces.worker import run_worker

    if settings.broker_url is None:
        print(
            "picmetric: a worker needs a broker: set PICMETRIC_BROKER_URL (redis://... or amqp://...)", file=sys.stderr
        )
        return 2
    concurrency = args.concurrency or settings.worker_concurrency
    threads = args.threads or (settings.worker_threads if concurrency == 1 else 1)
    if concurrency > 1 and threads > 1:
        print("picmetric: choose --concurrency (processes) or --threads (jobs in one process), not both",
              file=sys.stderr)  # fmt: skip
        return 2
    return run_worker(settings, concurrency=concurrency, threads=threads, loglevel=args.log_level)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from picmetric.interfaces.api.server import PROTOCOL

    with tempfile.TemporaryDirectory(prefix="picmetric-metrics-") as metrics_dir:
        if args.workers > 1:  # the workers write their metrics here, and /metrics adds them up
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(
            "picmetric.interfaces.api:app_from_environment", factory=True, host=args.host, port=args.port,
            workers=args.workers, log_level=args.log_level, proxy_headers=True, http=PROTOCOL,
        )  # fmt: skip
    return 0


def dashboard_dir() -> Path:
    """Where ``app.py``, ``pages/`` and ``.streamlit/`` are: the checkout this package runs from, or the copy an
    installed wheel puts under ``<prefix>/share/picmetric/dashboard``."""
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "app.py").is_file() and (checkout / "pages").is_dir():
        return checkout
    installed = Path(sysconfig.get_path("data")) / "share" / "picmetric" / "dashboard"
    if (installed / "app.py").is_file():
        return installed
    raise FileNotFoundError("the dashboard files are missing: reinstall picmetric with the [dashboard] extra")


def streamlit_flags(config: Path) -> list[str]:
    """The dashboard's ``.streamlit/config.toml`` as command-line flags, so it applies from any working directory
    (Streamlit reads that file from the current directory only)."""
    if not config.is_file():
        return []
    flags = []

    def walk(prefix: str, table: dict) -> None:  # nested tables ([theme.dark]) become --theme.dark.key=value
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flags.append(f"--{prefix}{key}={str(value).lower() if isinstance(value, bool) else value}")

    walk("", tomllib.loads(config.read_text()))
    return flags


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    """Start the Streamlit dashboard (what ``./bootstrap.sh run`` starts, without the set-up)."""
    try:
        folder = dashboard_dir()
    except FileNotFoundError as exc:
        print(f"picmetric: {exc}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "picmetric.interfaces.ui.serve", "run", str(folder / "app.py")]  # Streamlit's CLI
    command += streamlit_flags(folder / ".streamlit" / "config.toml")
    host = args.host
    if args.lan is not None:
        host = "0.0.0.0"  # the point: phones on the classroom's network connect
        address = args.lan or next(iter(lan_addresses()), None)
        if address is None:
            print("picmetric: --lan: this machine has no network address (is it on the Wi-Fi?)", file=sys.stderr)
            return 2
        lan_url = f"http://{address}:{args.port}"
        os.environ["PICMETRIC_LAN_URL"] = lan_url  # the class board's link and QR code name it
        print(f"picmetric: on the network at {lan_url} (phones: scan the class board's QR code)", file=sys.stderr)
    command += ["--server.port", str(args.port), "--server.address", host, *getattr(args, "streamlit_args", [])]
    os.execv(sys.executable, command)  # the dashboard takes over this process: signals reach Streamlit itself
