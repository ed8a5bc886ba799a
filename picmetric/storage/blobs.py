"""Blob stores: one interface, a local folder and any S3-compatible server. Keys are content-addressed
(``originals/<sha256>.<ext>``, ``renders/<sha256 of the render>.<ext>``), so writing the same bytes twice is
harmless and concurrent writers never conflict."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import PicMetricError
from ..settings import Settings

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


class StorageError(PicMetricError):
    """The object store could not be reached or refused an operation."""


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
    def keys(self) -> list[str]: ...
    def url(self, key: str) -> str | None:
        """A URL a browser can open, or None when blobs are served by PicMetric itself."""

    def check(self) -> None:
        """Raise StorageError when the store is not usable."""


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
            raise StorageError(f"stored image {key} is missing") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")
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

    def describe(self) -> str:
        return f"local folder {self.root.resolve()}"


class S3BlobStore:
    """Any S3-compatible server (AWS, SeaweedFS, MinIO, ...). Errors become StorageError with no secrets in them."""

    kind = "s3"

    def __init__(self, settings: Settings) -> None:
        assert settings.s3_bucket
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/") + "/" if settings.s3_prefix.strip("/") else ""
        self.public_base_url = settings.s3_public_base_url
        self.presign_seconds = settings.s3_presign_seconds
        self.endpoint_url = settings.s3_endpoint_url
        self._client = boto3.client(
            "s3",
            region_name=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
            aws_secret_access_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            config=BotoConfig(
                connect_timeout=3, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
            ),
        )  # fmt: skip

    def _error(self, action: str, exc: Exception) -> StorageError:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "error")
            return StorageError(f"object storage refused to {action} (bucket {self.bucket}: {code})")
        return StorageError(f"object storage is unreachable, could not {action} ({exc.__class__.__name__})")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type,
                ContentDisposition="inline", CacheControl="public, max-age=31536000, immutable",
            )  # fmt: skip
        except (BotoCoreError, ClientError) as exc:
            raise self._error("store an image", exc) from None

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error("read an image", exc) from None

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("delete an image", exc) from None

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error("check an image", exc) from None
        except BotoCoreError as exc:
            raise self._error("check an image", exc) from None

    def keys(self) -> list[str]:
        try:
            found = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                found += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
            return sorted(found)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list images", exc) from None

    def url(self, key: str) -> str | None:
        if self.public_base_url:
            return self.public_base_url.rstrip("/") + "/" + self.prefix + key
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.prefix + key}, ExpiresIn=self.presign_seconds
        )

    def ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self._client.create_bucket(Bucket=self.bucket)
            except (BotoCoreError, ClientError) as exc:
                raise self._error("create the bucket", exc) from None
        except BotoCoreError as exc:
            raise self._error("reach the bucket", exc) from None

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("reach the bucket", exc) from None

    def describe(self) -> str:
        return f"S3 bucket {self.bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")


def blob_store_from_settings(settings: Settings) -> LocalBlobStore | S3BlobStore:
    if settings.s3_bucket:
        return S3BlobStore(settings)
    return LocalBlobStore(settings.data_dir / "blobs")
