"""Persistence: results in PostgreSQL or SQLite (SQLAlchemy + Alembic), images in S3 or a local folder. It stores
and reads; running the models and deciding what to keep is ``picmetric.service``'s job."""

from picmetric.errors import DatabaseError, ImageDeletedError, MissingBlobError, StorageError
from picmetric.storage.blobs import BlobStore, LocalBlobStore, blob_store_from_settings
from picmetric.storage.records import NewSignature
from picmetric.storage.repository import (
    AnalysisRecord,
    HistoryFilter,
    HistoryItem,
    HistoryPage,
    JobRecord,
    JobState,
    NewJob,
    Repository,
)

__all__ = [
    "AnalysisRecord",
    "BlobStore",
    "DatabaseError",
    "HistoryFilter",
    "HistoryItem",
    "HistoryPage",
    "ImageDeletedError",
    "JobRecord",
    "JobState",
    "LocalBlobStore",
    "MissingBlobError",
    "NewJob",
    "NewSignature",
    "Repository",
    "StorageError",
    "blob_store_from_settings",
]
