"""Process-wide resources for the dashboard: one analyzer (models load once per server, not per session or
rerun) and one analysis service (with its jobs) per storage configuration."""

from __future__ import annotations

import hashlib
import json

import streamlit as st
from pydantic import SecretStr

from .. import logs
from ..intake import LoadedImage, load_image
from ..jobs import JobService
from ..pipeline import Analyzer, default_analyzer
from ..service import AnalysisService
from ..settings import Settings, settings_from_mapping
from ..storage import Repository


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
    analyzer = default_analyzer(app_settings())  # secrets.toml may set the model cache and thread budget
    analyzer.warm_up()
    return analyzer


@st.cache_resource(show_spinner="Opening storage…")
def _jobs(fingerprint: str, _settings: Settings) -> JobService:
    return JobService(AnalysisService(_settings, analyzer=get_analyzer()))


def get_service() -> AnalysisService:
    """Analyse and keep, and the stored history (``.repository``)."""
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


def working_image(repository: Repository, sha256: str) -> LoadedImage | None:
    """The decoded working copy of a stored original, kept per session for re-rendering without re-decoding."""
    cache: dict[str, LoadedImage] = st.session_state.setdefault("_working_images", {})
    if sha256 not in cache:
        found = repository.image_bytes(sha256, "original")
        if found is None:
            return None
        if len(cache) > 20:
            cache.pop(next(iter(cache)))
        cache[sha256] = load_image(found[0], settings=repository.settings)
    return cache[sha256]
