"""S3 access for the feature store and tone caches: URL parsing, one client, one error map.

Every S3 failure leaves this module as an :class:`~core.errors.ApiError` with a
clear message and a 4xx/502 status, never as a botocore exception (which would be a 500).
Objects are written with a single PUT, which S3 makes atomic: a reader sees the whole
object or none of it, never a half-written one.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from core.errors import ApiError, Forbidden, NotFound, PayloadTooLarge
from voices.errors import InvalidRequest, MissingObject, StorageUnavailable

log = logging.getLogger(__name__)

#: boto3 clients have no stubs here; this names what the functions expect.
S3Client = Any

SCHEME = "s3://"
MAX_PREFIX_CHARS = 900  # S3 keys are at most 1024 bytes; leave room for the names we append
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_RESERVED_PREFIXES = ("xn--", "sthree-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._~!*'()=+,@-]+$")
_FORBIDDEN_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
                    "AccountProblem", "InvalidToken", "ExpiredToken", "RequestTimeTooSkewed"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
_RETRIES = 3  # attempts in all, the first included


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (or key prefix) without leading or trailing slashes."""

    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, f"{self.key}/{name}" if self.key else name)


# --- URLs ------------------------------------------------------------------------------

def is_s3_url(raw: str) -> bool:
    return raw[: len(SCHEME)].lower() == SCHEME


def parse_s3_url(raw: str) -> S3Location:
    """Parse ``s3://bucket[/prefix]`` strictly; raises InvalidRequest (400) when malformed."""
    if not is_s3_url(raw):
        raise InvalidRequest(f"not an s3:// URL: {raw!r}")
    bucket, _, path = raw[len(SCHEME):].partition("/")
    _check_bucket(bucket)
    return S3Location(bucket, _clean_prefix(path.removesuffix("/"), raw))


def _check_bucket(bucket: str) -> None:
    if not bucket:
        raise InvalidRequest("s3:// URL has no bucket name (expected s3://bucket/prefix)")
    valid = (
        _BUCKET_RE.match(bucket)
        and ".." not in bucket
        and not _IPV4_RE.match(bucket)
        and not bucket.startswith(_RESERVED_PREFIXES)
        and not bucket.endswith(_RESERVED_SUFFIXES)
    )
    if not valid:
        raise InvalidRequest(
            f"invalid S3 bucket name {bucket!r}: 3-63 characters of lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )


def _clean_prefix(path: str, raw: str) -> str:
    if not path:
        return ""
    if len(path) > MAX_PREFIX_CHARS:
        raise InvalidRequest(f"S3 key prefix is too long (more than {MAX_PREFIX_CHARS} characters)")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidRequest(f"S3 key prefix in {raw!r} has an empty, '.' or '..' path segment")
        if not _SEGMENT_RE.match(segment):
            raise InvalidRequest(
                f"S3 key prefix segment {segment!r} has characters other than letters, digits and ._~!*'()=+,@-"
            )
    return path


# --- client ----------------------------------------------------------------------------

def get_client() -> S3Client:
    """The process's client for the configured endpoint (boto3 clients are thread-safe)."""
    from django.conf import settings

    return _client(
        settings.TTS_S3_ENDPOINT_URL or None,
        settings.TTS_S3_REGION or None,
        float(settings.TTS_S3_CONNECT_TIMEOUT),
        float(settings.TTS_S3_READ_TIMEOUT),
    )


def clear_clients() -> None:
    """Forget cached clients, so the next one reads credentials afresh (tests, key rotation)."""
    _client.cache_clear()


@functools.lru_cache(maxsize=8)
def _client(endpoint_url: str | None, region: str | None, connect_timeout: float, read_timeout: float) -> S3Client:
    return make_client(endpoint_url, region, connect_timeout=connect_timeout, read_timeout=read_timeout)


def make_client(endpoint_url: str | None, region: str | None, *, connect_timeout: float = 5.0,
                read_timeout: float = 30.0, access_key: str | None = None, secret_key: str | None = None) -> S3Client:
    """A new S3 client; credentials from the arguments, else boto3's default chain."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": _RETRIES, "mode": "standard"},
        # Path style works with every S3-compatible server (SeaweedFS, MinIO) and with AWS.
        s3={"addressing_style": "path"},
        # Only the checksums an operation requires: many S3-compatible servers reject the
        # newer flexible-checksum headers. Uploads carry Content-MD5 (see put_bytes) instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session per client: boto3's default session is not safe to share across threads.
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def endpoint_of(client: S3Client) -> str:
    return str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "the S3 endpoint")


# --- errors ----------------------------------------------------------------------------

def to_api_error(exc: Exception, *, endpoint: str, location: S3Location) -> ApiError:
    """Map a botocore/boto3 exception to the ApiError the client should see."""
    if isinstance(exc, ClientError):
        return _client_error(exc, location)
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return StorageUnavailable(f"S3 endpoint {endpoint} did not answer in time ({location.url})")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StorageUnavailable(f"cannot reach S3 endpoint {endpoint} ({location.url}): {exc}")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return Forbidden("this server has no usable S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    return StorageUnavailable(f"S3 request to {endpoint} for {location.url} failed: {exc}")


def _client_error(exc: ClientError, location: S3Location) -> ApiError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    detail = str(error.get("Message", "") or code)
    if code == "NoSuchBucket":
        return NotFound(f"S3 bucket {location.bucket!r} does not exist")
    if code in _MISSING_KEY_CODES:
        return MissingObject(f"{location.url} does not exist")
    if code in _FORBIDDEN_CODES:
        return Forbidden(f"S3 refused access to {location.url}: {code}: {detail}")
    return StorageUnavailable(f"S3 request for {location.url} failed: {code}: {detail}")


@contextmanager
def s3_errors(client: S3Client, location: S3Location) -> Iterator[None]:
    """Re-raise any S3 failure inside the block as the matching ApiError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        mapped = to_api_error(exc, endpoint=endpoint_of(client), location=location)
        log.warning("S3 %s: %s (%s)", location.url, mapped.message, type(exc).__name__)
        raise mapped from None


# --- objects ---------------------------------------------------------------------------

def put_bytes(client: S3Client, location: S3Location, data: bytes,
              content_type: str = "application/octet-stream") -> None:
    """One PUT: the object appears whole or not at all. Content-MD5 makes the server refuse
    a body corrupted on the way (SeaweedFS and AWS both check it)."""
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    with s3_errors(client, location):
        client.put_object(Bucket=location.bucket, Key=location.key, Body=data, ContentMD5=md5,
                          ContentType=content_type)


def get_bytes(client: S3Client, location: S3Location, *, max_bytes: int | None = None) -> bytes:
    """The object's bytes; PayloadTooLarge (413) before reading when it is over ``max_bytes``."""
    with s3_errors(client, location):
        response = client.get_object(Bucket=location.bucket, Key=location.key)
        body = response["Body"]
        try:
            size = int(response.get("ContentLength") or 0)
            if max_bytes is not None and size > max_bytes:
                raise PayloadTooLarge(f"{location.url} is {size} bytes, over the {max_bytes}-byte limit")
            data = body.read() if max_bytes is None else body.read(max_bytes + 1)
        finally:
            body.close()
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"{location.url} is over the {max_bytes}-byte limit")
    return data


def delete_object(client: S3Client, location: S3Location) -> None:
    """Delete; a key that is already gone is fine (S3 answers 204 either way)."""
    with s3_errors(client, location):
        client.delete_object(Bucket=location.bucket, Key=location.key)


def list_objects(client: S3Client, location: S3Location) -> Iterator[tuple[str, float]]:
    """(key, last-modified epoch seconds) of every object under ``location``'s prefix."""
    prefix = f"{location.key}/" if location.key else ""
    with s3_errors(client, location):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].timestamp()
