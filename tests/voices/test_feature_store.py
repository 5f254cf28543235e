from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthesis.engines.base import Features
from voices.errors import CorruptData
from voices.feature_cache import FeatureCache
from voices.feature_store import LocalFeatureStore, sha256_hex

KEY = "default/" + "a" * 32 + ".npz"


def test_it_round_trips_and_checks_the_checksum(tmp_path: Path) -> None:
    store = LocalFeatureStore(tmp_path)
    store.put(KEY, b"hello")
    assert store.get(KEY, sha256_hex(b"hello")) == b"hello"
    (tmp_path / KEY).write_bytes(b"hellO")
    with pytest.raises(CorruptData):
        store.get(KEY, sha256_hex(b"hello"))
    store.delete(KEY)
    with pytest.raises(CorruptData):
        store.get(KEY, sha256_hex(b"hello"))


@pytest.mark.parametrize("key", ["../x/" + "a" * 32 + ".npz", "default/../../etc/passwd", "/abs/" + "a" * 32 + ".npz", "x"])
def test_it_refuses_keys_that_could_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalFeatureStore(tmp_path).put(key, b"x")


def test_features_round_trip_without_pickle() -> None:
    f = Features(meta={"voice": "a", "pitch": 1.1, "名": "声"}, arrays={"style": np.ones((3, 4), np.float32)})
    g = Features.from_bytes(f.to_bytes())
    assert g.meta == f.meta
    np.testing.assert_array_equal(g.arrays["style"], f.arrays["style"])


def test_features_refuse_pickled_objects() -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(b"{}", np.uint8), evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        Features.from_bytes(buf.getvalue())


def test_feature_cache_is_bounded() -> None:
    cache = FeatureCache(maxsize=3)
    for i in range(10):
        cache.put(str(i), Features())
    assert len(cache) == 3
    assert cache.get("0") is None and cache.get("9") is not None
    cache.get("7")
    cache.put("10", Features())
    assert cache.get("7") is not None and cache.get("8") is None
