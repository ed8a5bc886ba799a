"""The HTTP API (FastAPI). ``picmetric serve`` runs it with uvicorn."""

from picmetric.interfaces.api.app import app_from_environment, create_app

__all__ = ["app_from_environment", "create_app"]
