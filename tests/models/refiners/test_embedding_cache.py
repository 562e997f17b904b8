"""EmbeddingCache: LRU order, stale entries, disabled cache."""
import pytest
import torch

from crseg.models.refiners.embedding_cache import EmbeddingCache, image_fingerprint


def test_lru_stale_and_stats():
    cache = EmbeddingCache(2)
    a, b, c = (torch.full((1, 2), float(i)) for i in range(3))
    cache.put('a', 'fa', a)
    cache.put('b', 'fb', b)
    assert cache.get('a', 'fa') is not None  # 'a' becomes most recent
    cache.put('c', 'fc', c)  # evicts 'b'
    assert cache.get('b', 'fb') is None
    assert torch.equal(cache.get('c', 'fc'), c)
    assert cache.get('a', 'other') is None  # stale: dropped
    assert 'a' not in cache._store
    assert cache.stats() == dict(entries=1, hits=2, misses=2, stale=1)
    cache.clear()
    assert len(cache) == 0


def test_disabled_and_bad_size():
    cache = EmbeddingCache(0)
    cache.put('a', 'f', torch.zeros(1))
    assert not cache.enabled and len(cache) == 0
    with pytest.raises(ValueError, match='cache_size'):
        EmbeddingCache(-1)


def test_put_detaches_and_fingerprint_sees_content_and_shape():
    w = torch.ones(2, requires_grad=True)
    cache = EmbeddingCache(1)
    cache.put('k', 'f', w * 2)
    assert not cache.get('k', 'f').requires_grad
    img = torch.zeros(3, 4, 6, dtype=torch.uint8)
    other = img.clone()
    other[0, 0, 0] = 1
    assert image_fingerprint(img) == image_fingerprint(img.clone())
    assert image_fingerprint(img) != image_fingerprint(other)
    assert image_fingerprint(img) != image_fingerprint(img.reshape(3, 6, 4))
