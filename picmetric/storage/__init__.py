"""Persistence: results in PostgreSQL or SQLite (SQLAlchemy + Alembic), images in S3 or a local folder."""

from .blobs import BlobStore, LocalBlobStore, StorageError, blob_store_from_settings
from .repository import (
    AnalysisFailedError,
    DatabaseError,
    HistoryFilter,
    HistoryItem,
    HistoryPage,
    ImageDeletedError,
    Repository,
    StoredAnalysis,
)

__all__ = [
    "AnalysisFailedError",
    "BlobStore",
    "DatabaseError",
    "HistoryFilter",
    "HistoryItem",
    "HistoryPage",
    "ImageDeletedError",
    "LocalBlobStore",
    "Repository",
    "StorageError",
    "StoredAnalysis",
    "blob_store_from_settings",
]
