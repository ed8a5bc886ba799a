"""Process-wide resources for the dashboard: one analyzer (models load once per server, not per session or
rerun) and one analysis service (with its jobs) per storage configuration."""

from __future__ import annotations

import base64
import hashlib
import json

import cv2
import streamlit as st
from pydantic import SecretStr
from streamlit import runtime

from picmetric import logs
from picmetric.core.analyzer import Analyzer, shared_analyzer
from picmetric.core.annotate import encode_image
from picmetric.core.decoding import LoadedImage, load_image
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import JobService
from picmetric.service.videos import VideoService
from picmetric.settings import Settings, settings_from_mapping


def app_settings() -> Settings:
    """Environment and ``.env``, overridden by ``.streamlit/secrets.toml`` when it exists."""
    try:
        secrets = dict(st.secrets)
    except Exception:  # no secrets file: the embedded defaults apply
        secrets = {}
    return settings_from_mapping(secrets)


@st.cache_resource(show_spinner="Loading the three models…")
def get_analyzer() -> Analyzer:
    logs.install()
    analyzer = shared_analyzer(app_settings())  # secrets.toml may set the model cache and thread budget
    analyzer.warm_up()
    return analyzer


@st.cache_resource(show_spinner="Opening storage…")
def _jobs(fingerprint: str, _settings: Settings) -> JobService:
    jobs = JobService(AnalysisService(_settings, analyzer=get_analyzer()))
    VideoService(jobs)  # video chunks run here too when no broker is configured
    jobs.keep_leases()  # a batch left by a dashboard that stopped is picked up again
    return jobs


def get_videos() -> VideoService:
    """Videos, on the same jobs and storage as the photos."""
    return VideoService(get_jobs())


def get_service() -> AnalysisService:
    """Analyse and keep, and the stored history."""
    return get_jobs().service


def get_jobs() -> JobService:
    """One service per storage configuration; the fingerprint hashes the secrets rather than holding them."""
    settings = app_settings()
    values = {
        key: value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        for key, value in settings.model_dump().items()
    }
    fingerprint = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    return _jobs(fingerprint, settings)


#: the longest side of the photo sent to the browser under client-drawn boxes: sharp at the 820 px of
#: presentation mode, and a third of the bytes of a 1280 px copy (it travels inside the figure at each change)
BROWSER_IMAGE_SIDE = 960


@st.cache_data(max_entries=32, show_spinner=False)
def _browser_jpeg(sha256: str, _image: LoadedImage) -> bytes:
    pixels = _image.pixels
    factor = BROWSER_IMAGE_SIDE / max(pixels.shape[:2])
    if factor < 1:
        pixels = cv2.resize(pixels, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return encode_image(pixels, "jpeg")


def browser_jpeg(image: LoadedImage) -> bytes:
    """The working image as the JPEG shown on screen, encoded once per photo."""
    return _browser_jpeg(image.sha256, image)


def image_src(image: LoadedImage, element_key: str) -> str:
    """Where the browser gets the photo under client-drawn boxes: a URL of Streamlit's media store (the same
    URL at every display change, so the browser downloads it once), or a data URI outside a Streamlit server.
    Encoded once per photo."""
    data = browser_jpeg(image)
    if runtime.exists():
        return runtime.get_instance().media_file_mgr.add(data, "image/jpeg", f"picmetric-photo-{element_key}")
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def working_image(service: AnalysisService, sha256: str) -> LoadedImage | None:
    """The decoded working copy of a stored original, kept per session for re-rendering without re-decoding."""
    cache: dict[str, LoadedImage] = st.session_state.setdefault("_working_images", {})
    if sha256 not in cache:
        found = service.image(sha256, "original")
        if found is None:
            return None
        if len(cache) > 20:
            cache.pop(next(iter(cache)))
        cache[sha256] = load_image(found.content, settings=service.settings)
    return cache[sha256]
