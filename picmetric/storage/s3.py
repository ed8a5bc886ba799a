"""S3-compatible object storage (AWS, SeaweedFS, MinIO, ...), behind the same small protocol as the local folder.

Needs boto3, PicMetric's ``[s3]`` extra; imported only when a bucket is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from picmetric.errors import FetchError, ImageTooLargeError, MissingBlobError, StorageError
from picmetric.settings import Settings

_NO_BUCKET = ("404", "NoSuchBucket", "NotFound")  # head_bucket answers a bare 404
_NO_OBJECT = ("404", "NoSuchKey", "NotFound")  # get_object says NoSuchKey, head_object a bare 404
#: answers about the request itself, not the server's health: the same request is refused again whenever it is sent
_REFUSED_FOR_GOOD = (
    "400", "403", "AccessDenied", "InvalidRequest", "InvalidArgument", "InvalidURI", "InvalidBucketName",
    "KeyTooLongError", "InvalidObjectState", "AllAccessDisabled",
)  # fmt: skip


def s3_client(settings: Settings):
    """A boto3 client for the configured endpoint and credentials. A request gives up within ``s3_timeout_s`` in
    all: two tries, each with a quarter of it to connect and a quarter for every wait on the server, so a silent
    network or a stalled server answers 503 then, not after botocore's default minute per wait."""
    return boto3.client(
        "s3",
        region_name=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
        config=BotoConfig(
            connect_timeout=settings.s3_timeout_s / 4, read_timeout=settings.s3_timeout_s / 4,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=64,  # a worker's jobs side by side each hold one while they wait (default 10)
            s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
        ),
    )  # fmt: skip


def parse_s3_url(url: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise StorageError(f"not an S3 location: {url!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix


class S3Objects:
    """Read access to any bucket the configured credentials reach: the photos ``picmetric ingest`` indexes."""

    def __init__(self, settings: Settings) -> None:
        self._client = s3_client(settings)

    def list(self, url: str, suffixes: tuple[str, ...]) -> list[str]:
        """Every s3://bucket/key under the prefix whose name ends in one of ``suffixes`` (case-insensitive)."""
        bucket, prefix = parse_s3_url(url)
        try:
            found = [
                f"s3://{bucket}/{o['Key']}"
                for o in _listing(self._client, bucket, prefix)
                if o["Key"].lower().endswith(suffixes)
            ]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not list {url} ({_code(exc)})") from None
        return found

    def get(self, url: str, max_bytes: int) -> bytes:
        bucket, key = parse_s3_url(url)
        try:
            body = self._client.get_object(Bucket=bucket, Key=key)["Body"]
            data = body.read(max_bytes + 1)
        except ClientError as exc:
            code = _code(exc)
            if code in _NO_OBJECT or code in _NO_BUCKET:
                raise FetchError(f"{url} does not exist") from None
            if code in _REFUSED_FOR_GOOD:  # asking again gets the same answer: the job fails now, not in an hour
                raise FetchError(f"the object store refused to read {url} ({code})") from None
            raise StorageError(f"could not read {url} ({code})") from None
        except BotoCoreError as exc:
            raise StorageError(f"could not read {url} ({_code(exc)})") from None
        if len(data) > max_bytes:
            raise ImageTooLargeError(f"{url} is larger than the {max_bytes / 1e6:.0f} MB upload limit")
        return data


def _code(exc: Exception) -> str:
    """S3's error code of a refusal ("NoSuchKey", "404", ...), or the kind of failure (a timeout, a refused
    connection); never a message, which may carry an endpoint or key."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "error"))
    return exc.__class__.__name__


def _listing(client, bucket: str, prefix: str) -> Iterator[dict]:
    """Every object under a prefix, page after page (S3 answers 1,000 at a time)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


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
        self._client = s3_client(settings)

    def _error(self, action: str, exc: Exception) -> StorageError:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _NO_BUCKET or self._bucket_missing():  # some servers answer AccessDenied for a missing bucket
                return StorageError(
                    f"the S3 bucket {self.bucket!r} does not exist: create it, or let PicMetric create it on start "
                    "(PICMETRIC_S3_CREATE_BUCKET=true)"
                )
            return StorageError(f"object storage refused to {action} (bucket {self.bucket}: {code})")
        return StorageError(f"object storage is unreachable, could not {action} ({exc.__class__.__name__})")

    def _bucket_missing(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return _code(exc) in _NO_BUCKET
        except BotoCoreError:
            return False
        return False

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
        except ClientError as exc:
            if _code(exc) in _NO_OBJECT:
                raise MissingBlobError(f"stored image {key} is missing from bucket {self.bucket}") from None
            raise self._error("read an image", exc) from None
        except BotoCoreError as exc:
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
            if _code(exc) in _NO_OBJECT:
                return False
            raise self._error("check an image", exc) from None
        except BotoCoreError as exc:
            raise self._error("check an image", exc) from None

    def keys(self, older_than_s: float = 0) -> list[str]:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        try:
            found = [
                item["Key"][len(self.prefix) :]
                for item in _listing(self._client, self.bucket, self.prefix)
                if item["LastModified"] <= cutoff
            ]
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
        """Create the bucket when it does not exist (a fresh deployment); any other refusal is reported."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _NO_BUCKET:
                raise self._error("reach the bucket", exc) from None
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
