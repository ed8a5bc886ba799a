"""The HTTP API (FastAPI). ``picmetric serve`` runs it with uvicorn."""

from .app import create_app

__all__ = ["create_app"]
