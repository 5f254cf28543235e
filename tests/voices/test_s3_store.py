"""The S3 feature store and S3 helpers against a real S3 server (SeaweedFS ``weed mini``)."""
from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.errors import ApiError
from tests.s3server import REGION, S3Server
from voices import s3
from voices.errors import CorruptData, MissingObject
from voices.feature_store import LocalFeatureStore, S3FeatureStore, get_feature_store, sha256_hex

KEY = "default/" + "a" * 32 + ".npz"


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    name = f"unit-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> S3FeatureStore:
    return S3FeatureStore(bucket, f"features-{uuid.uuid4().hex[:8]}", s3_server.client())


def _object(s3_server: S3Server, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _dead_port() -> int:
    """A local port nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A socket that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def _status(exc_info: pytest.ExceptionInfo[ApiError]) -> int:
    return exc_info.value.status


# --- S3FeatureStore --------------------------------------------------------------------

def test_round_trip_under_the_prefix(store: S3FeatureStore, s3_server: S3Server, bucket: str) -> None:
    store.put(KEY, b"hello")
    assert store.get(KEY, sha256_hex(b"hello")) == b"hello"
    assert _object(s3_server, bucket, f"{store.base.key}/{KEY}") == b"hello"
    store.put(KEY, b"replaced")  # a put replaces the object whole
    assert store.get(KEY, sha256_hex(b"replaced")) == b"replaced"
    store.delete(KEY)
    with pytest.raises(CorruptData, match="is missing"):
        store.get(KEY, sha256_hex(b"replaced"))
    store.delete(KEY)  # deleting what is gone is fine


def test_checksum_mismatch_is_corrupt_data(store: S3FeatureStore, s3_server: S3Server, bucket: str) -> None:
    store.put(KEY, b"hello")
    s3_server.client().put_object(Bucket=bucket, Key=f"{store.base.key}/{KEY}", Body=b"hellO")
    with pytest.raises(CorruptData, match="fails its checksum"):
        store.get(KEY, sha256_hex(b"hello"))


def test_missing_object_is_corrupt_data(store: S3FeatureStore) -> None:
    with pytest.raises(CorruptData, match=f"stored data {KEY} is missing"):
        store.get(KEY, sha256_hex(b"x"))


def test_empty_prefix_puts_keys_at_the_bucket_root(s3_server: S3Server, bucket: str) -> None:
    key = f"root/{uuid.uuid4().hex}.npz"
    S3FeatureStore(bucket, "", s3_server.client()).put(key, b"top")
    assert _object(s3_server, bucket, key) == b"top"


@pytest.mark.parametrize(
    "key", ["../x/" + "a" * 32 + ".npz", "default/../../etc/passwd", "/abs/" + "a" * 32 + ".npz", "x"]
)
def test_malformed_keys_are_refused(store: S3FeatureStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        store.get(key, "0" * 64)


def test_missing_bucket_is_404(s3_server: S3Server) -> None:
    store = S3FeatureStore(f"no-such-{uuid.uuid4().hex[:12]}", "p", s3_server.client())
    for call in (lambda: store.put(KEY, b"x"), lambda: store.get(KEY, sha256_hex(b"x"))):
        with pytest.raises(ApiError) as info:
            call()
        assert _status(info) == 404 and "bucket" in info.value.message and "does not exist" in info.value.message


def test_wrong_secret_key_is_403(s3_server: S3Server, bucket: str) -> None:
    store = S3FeatureStore(bucket, "p", s3_server.client(secret_key="not-the-secret"))
    for call in (lambda: store.put(KEY, b"x"), lambda: store.get(KEY, sha256_hex(b"x"))):
        with pytest.raises(ApiError) as info:
            call()
        assert _status(info) == 403 and "SignatureDoesNotMatch" in info.value.message


def test_unknown_access_key_is_403(s3_server: S3Server, bucket: str) -> None:
    client = s3.make_client(s3_server.endpoint_url, REGION, access_key="nobody", secret_key="x")
    with pytest.raises(ApiError) as info:
        S3FeatureStore(bucket, "p", client).put(KEY, b"x")
    assert _status(info) == 403 and "InvalidAccessKeyId" in info.value.message


def test_unreachable_endpoint_is_a_quick_502() -> None:
    endpoint = f"http://127.0.0.1:{_dead_port()}"
    client = s3.make_client(endpoint, REGION, connect_timeout=0.5, read_timeout=0.5, access_key="k", secret_key="s")
    store = S3FeatureStore("some-bucket", "p", client)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        store.get(KEY, sha256_hex(b"x"))
    assert _status(info) == 502 and endpoint in info.value.message
    assert time.monotonic() - started < 10


def test_endpoint_that_never_answers_is_a_502(silent_endpoint: str) -> None:
    client = s3.make_client(silent_endpoint, REGION, connect_timeout=0.5, read_timeout=0.5,
                            access_key="k", secret_key="s")
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        S3FeatureStore("some-bucket", "p", client).put(KEY, b"x")
    assert _status(info) == 502 and silent_endpoint in info.value.message and "in time" in info.value.message
    assert time.monotonic() - started < 15


# --- helpers ---------------------------------------------------------------------------

def test_get_bytes_refuses_an_object_over_the_cap(s3_server: S3Server, bucket: str) -> None:
    location = s3.S3Location(bucket, f"big/{uuid.uuid4().hex}")
    s3.put_bytes(s3_server.client(), location, b"x" * 2000)
    with pytest.raises(ApiError) as info:
        s3.get_bytes(s3_server.client(), location, max_bytes=1999)
    assert _status(info) == 413
    assert s3.get_bytes(s3_server.client(), location, max_bytes=2000) == b"x" * 2000


def test_missing_key_is_404(s3_server: S3Server, bucket: str) -> None:
    with pytest.raises(MissingObject) as info:
        s3.get_bytes(s3_server.client(), s3.S3Location(bucket, "nothing/here"))
    assert _status(info) == 404 and f"s3://{bucket}/nothing/here" in info.value.message


@pytest.mark.parametrize(
    ("raw", "bucket", "key"),
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my.bucket-1/some/prefix", "my.bucket-1", "some/prefix"),
        ("s3://abc/some/prefix/", "abc", "some/prefix"),
        ("S3://abc/a_b/c.ttsc", "abc", "a_b/c.ttsc"),
    ],
)
def test_parse_s3_url(raw: str, bucket: str, key: str) -> None:
    assert s3.parse_s3_url(raw) == s3.S3Location(bucket, key)


@pytest.mark.parametrize(
    "raw",
    [
        "s3://", "s3:///prefix", "s3://ab/x", "s3://" + "a" * 64, "s3://My-Bucket/x", "s3://-bucket/x",
        "s3://bucket-/x", "s3://my..bucket/x", "s3://192.168.1.1/x", "s3://xn--bucket/x", "s3://user:pw@bucket/x",
        "s3://bucket/../x", "s3://bucket/a/../b", "s3://bucket/a/./b", "s3://bucket/a//b", "s3://bucket//a",
        "s3://bucket/a?versionId=1", "s3://bucket/a#b", "s3://bucket/a\\b", "s3://bucket/a\x00b", "s3://bucket/a b",
        "s3://bucket/" + "a" * 1000, "http://bucket/x",
    ],
)
def test_parse_s3_url_refuses_malformed(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        s3.parse_s3_url(raw)
    assert _status(info) == 400


# --- choosing the store from settings --------------------------------------------------

@pytest.fixture
def s3_settings(settings, monkeypatch, s3_server: S3Server) -> Iterator[None]:
    """Settings and credentials of a server process configured for ``s3_server``."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    settings.TTS_S3_ENDPOINT_URL = s3_server.endpoint_url
    s3.clear_clients()
    yield
    s3.clear_clients()


@pytest.fixture
def fresh_store_choice() -> Iterator[None]:
    get_feature_store.cache_clear()
    s3.clear_clients()
    yield
    get_feature_store.cache_clear()
    s3.clear_clients()


@pytest.mark.usefixtures("fresh_store_choice")
def test_default_store_is_local_under_the_data_dir(settings) -> None:
    settings.TTS_FEATURE_STORE = ""
    store = get_feature_store()
    assert isinstance(store, LocalFeatureStore) and store.root == settings.TTS_DATA_DIR / "voices"


@pytest.mark.usefixtures("fresh_store_choice")
def test_a_plain_value_is_a_local_directory(settings, tmp_path: Path) -> None:
    settings.TTS_FEATURE_STORE = str(tmp_path / "blobs")
    store = get_feature_store()
    assert isinstance(store, LocalFeatureStore) and store.root == tmp_path / "blobs"


@pytest.mark.usefixtures("fresh_store_choice", "s3_settings")
def test_an_s3_url_is_an_s3_store_built_from_settings(settings, s3_server: S3Server, bucket: str) -> None:
    settings.TTS_FEATURE_STORE = f"s3://{bucket}/from-settings/"
    store = get_feature_store()
    assert isinstance(store, S3FeatureStore) and store.base == s3.S3Location(bucket, "from-settings")
    store.put(KEY, b"configured")
    assert _object(s3_server, bucket, f"from-settings/{KEY}") == b"configured"


@pytest.mark.usefixtures("fresh_store_choice")
@pytest.mark.parametrize("value", ["s3://Bad_Bucket/x", "s3://bucket/../x", "gs://bucket/x"])
def test_a_bad_store_setting_is_a_configuration_error(settings, value: str) -> None:
    settings.TTS_FEATURE_STORE = value
    with pytest.raises(ImproperlyConfigured, match="TTS_FEATURE_STORE"):
        get_feature_store()


# --- tone caches at s3:// locations ------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.usefixtures("s3_settings")
def test_tone_cache_over_the_size_cap_is_413(settings, s3_server: S3Server, bucket: str) -> None:
    from voices import tone_cache
    from voices.models import Tenant

    settings.TTS_CACHE_MAX_BYTES = 1024
    s3.put_bytes(s3_server.client(), s3.S3Location(bucket, "big/tone_cache.ttsc"), b"x" * 1025)
    tenant = Tenant.objects.create(slug="s3-unit", name="s3 unit")
    for raw in (f"s3://{bucket}/big", f"s3://{bucket}/big/", f"s3://{bucket}/big/tone_cache.ttsc"):
        with pytest.raises(ApiError) as info:
            tone_cache.load_bundle(tenant, raw, [])
        assert _status(info) == 413, raw


@pytest.mark.django_db
@pytest.mark.usefixtures("s3_settings")
def test_tone_cache_location_errors(bucket: str) -> None:
    from voices import tone_cache
    from voices.models import Tenant

    tenant = Tenant.objects.create(slug="s3-unit", name="s3 unit")
    cases = [
        (lambda: tone_cache.load_bundle(tenant, f"s3://{bucket}/nothing-here", []), 404),
        (lambda: tone_cache.load_bundle(tenant, "s3://no-such-bucket-x1/p", []), 404),
        (lambda: tone_cache.load_bundle(tenant, "s3://bucket/../p", []), 400),
        (lambda: tone_cache.save_bundle(tenant, "s3://Bad/p", []), 400),
        (lambda: tone_cache.save_bundle(tenant, "gs://bucket/p", []), 400),
        (lambda: tone_cache.load_bundle(tenant, "https://example.com/tone_cache.ttsc", []), 400),
    ]
    for call, status in cases:
        with pytest.raises(ApiError) as info:
            call()
        assert _status(info) == status, info.value.message


@pytest.mark.parametrize("location, allowed", [
    ("s3://caches/tenant-a", True),
    ("s3://caches/tenant-a/deeper/tone_cache.ttsc", True),
    ("s3://caches/tenant-ab", False),
    ("s3://caches", False),
    ("s3://other-bucket/tenant-a", False),
])
def test_s3_cache_locations_are_confined_to_the_cache_roots(settings, location: str, allowed: bool) -> None:
    from core.errors import Forbidden
    from voices.tone_cache import confined_s3

    settings.TTS_S3_CACHE_ROOTS = ("s3://caches/tenant-a", "s3://spare/x")
    if allowed:
        assert confined_s3(location).bucket == "caches"
    else:
        with pytest.raises(Forbidden):
            confined_s3(location)
