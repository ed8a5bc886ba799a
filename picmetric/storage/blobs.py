"""Blob stores: one interface, a local folder and any S3-compatible server. Keys are content-addressed
(``originals/<sha256>.<ext>``, ``renders/<sha256 of the render>.<ext>``), so writing the same bytes twice is
harmless and concurrent writers never conflict."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Protocol

from picmetric.errors import MissingBlobError, StorageError
from picmetric.settings import Settings

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
    "image/heic": "heic",
    "image/heif": "heif",
}
FORMAT_CONTENT_TYPES = {
    "JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp",
    "TIFF": "image/tiff", "HEIC": "image/heic", "HEIF": "image/heif", "MPO": "image/jpeg",
}  # fmt: skip


def original_key(sha256: str, content_type: str) -> str:
    return f"originals/{sha256}.{EXTENSIONS.get(content_type, 'bin')}"


def render_key(data: bytes, content_type: str) -> str:
    return f"renders/{hashlib.sha256(data).hexdigest()}.{EXTENSIONS.get(content_type, 'bin')}"


class BlobStore(Protocol):
    kind: str

    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def keys(self, older_than_s: float = 0) -> list[str]:
        """Every key, or those whose blob was written at least ``older_than_s`` seconds ago."""

    def url(self, key: str) -> str | None:
        """A URL a browser can open, or None when blobs are served by PicMetric itself."""

    def check(self) -> None:
        """Raise StorageError when the store is not usable."""

    def ensure_bucket(self) -> None:
        """Create the store's container (bucket, folder) when it does not exist yet."""

    def describe(self) -> str:
        """Where the blobs are, in words (a folder, or a bucket and its endpoint)."""


class LocalBlobStore:
    """A folder on disk; writes are atomic (temporary file + rename)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"invalid blob key {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write to the image folder: {exc.strerror}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise MissingBlobError(f"stored image {key} is missing from the image folder") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, older_than_s: float = 0) -> list[str]:
        if not self.root.is_dir():
            return []
        cutoff = time.time() - older_than_s
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.stat().st_mtime <= cutoff
        )

    def url(self, key: str) -> str | None:
        return None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"image folder {self.root} is not usable: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"image folder {self.root} is not writable")

    ensure_bucket = check  # a folder is created by the same call that checks it

    def describe(self) -> str:
        return f"local folder {self.root.resolve()}"


def blob_store_from_settings(settings: Settings) -> BlobStore:
    """S3 when a bucket is configured (the ``[s3]`` extra, boto3, is imported only then), else a local folder."""
    if settings.s3_bucket:
        from picmetric.storage.s3 import S3BlobStore

        return S3BlobStore(settings)
    return LocalBlobStore(settings.data_dir / "blobs")
