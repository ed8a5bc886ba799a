"""The repository: the persistence half of "analyse and keep". Rows (SQLAlchemy) and blobs (S3 or a folder);
it never runs a model: ``picmetric.service`` drives the steps below, and this module only stores, claims and reads.

Guarantees (see tests/test_storage.py):
* a unique (image, options) row is claimed before the models run; its holder renews a heartbeat, so a dead holder's
  claim is taken over within the lease (``claim``, ``claim_state``, ``heartbeat``);
* blobs are written before the rows that point to them, and rows are removed before their blobs, so no row ever
  points to a missing blob; ``undo`` removes what a failed call created unless a row or an analysis in flight
  uses it; ``sweep_orphans`` removes what a crash left behind, never a blob young enough to be in flight;
* jobs (one queued analysis each) and batches (jobs submitted together) are rows too, shared by every process.
"""

from __future__ import annotations

from picmetric.storage.analyses import AnalysisStore
from picmetric.storage.base import StoreBase
from picmetric.storage.boards import BoardPhotoRecord, BoardRecord, BoardStore
from picmetric.storage.datasets import (
    DatasetNameTakenError,
    DatasetPhotoRecord,
    DatasetRecord,
    DatasetStore,
    NewDatasetPhoto,
)
from picmetric.storage.history import SWEEP_GRACE_S, HistoryStore
from picmetric.storage.jobs import JobStore
from picmetric.storage.records import (
    JOB_STATES,
    AnalysisRecord,
    ClaimState,
    HistoryFilter,
    HistoryItem,
    HistoryPage,
    JobRecord,
    JobState,
    NewJob,
)
from picmetric.storage.signatures import Neighbour, Signature, SignatureStore
from picmetric.storage.status import StatusStore
from picmetric.storage.videos import VideoAnalysisRecord, VideoChunkRecord, VideoRecord, VideoStore

__all__ = [
    "JOB_STATES", "SWEEP_GRACE_S", "AnalysisRecord", "BoardPhotoRecord", "BoardRecord", "ClaimState",
    "DatasetNameTakenError", "DatasetPhotoRecord", "DatasetRecord", "NewDatasetPhoto", "VideoAnalysisRecord",
    "VideoChunkRecord", "VideoRecord",
    "HistoryFilter", "HistoryItem", "HistoryPage",
    "JobRecord", "JobState", "Neighbour", "NewJob", "Repository", "Signature", "StoreBase",
]  # fmt: skip


class Repository(
    AnalysisStore, BoardStore, DatasetStore, HistoryStore, JobStore, SignatureStore, StatusStore, VideoStore
):
    """Everything storage does, one object per database + blob store; each concern lives in its own module."""
