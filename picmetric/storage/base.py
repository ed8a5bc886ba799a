"""The repository's plumbing: engine, sessions, the blob store and the errors every part shares."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, LargeBinary, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from picmetric.core.results import ImageFacts
from picmetric.errors import DatabaseError, ImageDeletedError, StorageError
from picmetric.settings import Settings
from picmetric.storage.blobs import BlobStore, blob_store_from_settings
from picmetric.storage.db import make_engine, upgrade, within
from picmetric.storage.records import NewSignature
from picmetric.storage.schema import (
    EmbeddingRow,
    ImageRow,
    JobRow,
    RenderRow,
    VideoAnalysisRow,
    VideoChunkRow,
    VideoRow,
)

logger = logging.getLogger(__name__)


class StoreBase:
    """One database (engine, sessions, migrations run on start) and one blob store, shared by the parts."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        blobs: BlobStore | None = None,
        migrate: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        #: the time leases and heartbeats are kept by (tests turn it instead of sleeping)
        self.now = clock
        self.engine = engine or make_engine(self.settings.resolved_database_url, self.settings.db_timeout_s)
        self.blobs = blobs or blob_store_from_settings(self.settings)
        if blobs is None and self.settings.s3_create_bucket:
            try:
                self.blobs.ensure_bucket()  # a fresh deployment: the bucket is created, not reported missing
            except StorageError as exc:  # unreachable now: health() and every store call say so
                logger.warning("object storage not ready at start: %s", exc)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:96]
        if migrate:
            with self._db_errors("prepare the database"):
                upgrade(self.engine)

    # -- plumbing ----------------------------------------------------------------------------------------------

    @contextmanager
    def _db_errors(self, action: str) -> Iterator[None]:
        try:
            with within(self.settings.db_timeout_s):
                yield
        except IntegrityError:
            raise
        # the driver's own errors too: a few calls reach it unwrapped (switching a broken connection to autocommit)
        except (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error) as exc:
            raise DatabaseError(f"the database could not {action} ({exc.__class__.__name__})") from None

    @contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        with self._db_errors(action), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _statement(self, action: str) -> Iterator[Connection]:
        """For one statement that needs no transaction around it (it is atomic alone): run as it is sent, without
        the BEGIN and COMMIT round trips a transaction costs, which over a network are most of its time."""
        with self._db_errors(action), self.engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def _insert(self, table):
        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)

    def _image_insert(self, image: ImageFacts, key: str, content_type: str):
        """An image's row, unless one of its sha256 is there already (its original blob is stored first)."""
        return (
            self._insert(ImageRow)
            .values(
                sha256=image.sha256,
                md5=image.md5,
                size_bytes=image.size_bytes,
                format=image.format,
                width=image.width,
                height=image.height,
                source=image.source,
                original_name=image.name,
                blob_key=key,
                content_type=content_type,
                created_at=datetime.now(UTC),
            )  # fmt: skip
            .on_conflict_do_nothing(index_elements=["sha256"])
        )

    def _add_signature(self, session: Session, image_id: Any, signature: NewSignature) -> None:
        """Two statements, whatever ``image_id`` is (a number, or a subquery that finds it): the caller's
        transaction may be far from the database."""
        session.execute(update(ImageRow).where(ImageRow.id == image_id).values(phash=signature.phash))
        session.execute(
            self._insert(EmbeddingRow)
            .from_select(
                ["image_id", "model", "vector"],
                select(ImageRow.id, literal(signature.model), literal(signature.vector, LargeBinary)).where(
                    ImageRow.id == image_id
                ),
            )
            .on_conflict_do_nothing(index_elements=["image_id", "model"])
        )

    def _referenced_keys(self, session: Session, among: list[str] | None = None) -> set[str]:
        """Blob keys that rows point to (all of them, or only those of ``among``)."""
        found: set[str] = set()
        for column in (
            ImageRow.blob_key, RenderRow.blob_key, JobRow.input_key, VideoRow.blob_key, VideoAnalysisRow.result_key,
            VideoAnalysisRow.clip_key, VideoChunkRow.result_key,
        ):  # fmt: skip
            query = select(column) if among is None else select(column).where(column.in_(among))
            found |= {key for key in session.scalars(query) if key is not None}
        return found


@contextmanager
def _deleted_meanwhile() -> Iterator[None]:
    """A row of ours vanished under a write (a DELETE or reset ran meanwhile): say so, as a 409."""
    try:
        yield
    except IntegrityError:
        raise ImageDeletedError(
            "the image was deleted while it was being analysed; send it again to analyse it anew"
        ) from None
