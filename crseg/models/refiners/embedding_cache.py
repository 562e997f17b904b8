"""A small LRU cache of SAM image embeddings.

Entries are keyed by a caller-given key (e.g. the image path) and carry a
fingerprint of the image content. A lookup whose key matches but whose
fingerprint differs (the same path after a random flip or crop, say) is a
*stale* miss: the entry is dropped and the caller re-encodes, so a key can
never hand back the embedding of a different image.
"""
import hashlib
from collections import OrderedDict
from typing import Callable, Hashable, List, Optional, Sequence

import torch


def image_fingerprint(image: torch.Tensor) -> str:
    """A content hash of a uint8 image tensor (shape included).

    About 1 ms per megapixel on a CPU core; a tensor on an accelerator is
    copied to the host first.
    """
    data = image.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(tuple(data.shape)).encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """Least-recently-used map ``key -> (fingerprint, embedding)``.

    Args:
        max_entries (int): How many embeddings to keep; 0 disables the cache.
    """

    def __init__(self, max_entries: int = 16) -> None:
        if not isinstance(max_entries, int) or max_entries < 0:
            raise ValueError(f'cache_size must be an int >= 0, got '
                             f'{max_entries!r}')
        self.max_entries = max_entries
        self._store: 'OrderedDict[Hashable, tuple]' = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.stale = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: Hashable, fingerprint: str) -> Optional[torch.Tensor]:
        """Return the cached embedding, or ``None`` (counted as a miss)."""
        entry = self._store.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] != fingerprint:
            self.stale += 1
            self.misses += 1
            del self._store[key]
            return None
        self._store.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, fingerprint: str,
            embedding: torch.Tensor) -> None:
        """Store a detached embedding, evicting the least recently used."""
        if not self.enabled:
            return
        self._store[key] = (fingerprint, embedding.detach())
        self._store.move_to_end(key)
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)

    def encode(self, images: Sequence[torch.Tensor], keys: Sequence,
               encode_batch: Callable[[List[torch.Tensor]], Sequence[torch.Tensor]],
               batch_size: int, use: bool = True) -> List[torch.Tensor]:
        """One embedding per image (``[1, ...]`` each), from the cache where possible.

        Images with a key are looked up in (and added to) the cache when ``use`` holds; the
        same key and content twice in one call is encoded once. The misses go to
        ``encode_batch`` (a list of images -> one embedding row per image) ``batch_size``
        at a time.
        """
        out: List[Optional[torch.Tensor]] = [None] * len(images)
        todo = {}  # (key, fingerprint) or index -> [indices]
        for i, (img, key) in enumerate(zip(images, keys)):
            if use and key is not None:
                fp = image_fingerprint(img)
                if (key, fp) not in todo:
                    out[i] = self.get(key, fp)
                if out[i] is None:
                    todo.setdefault((key, fp), []).append(i)
            else:
                todo[i] = [i]
        groups = list(todo.items())
        for start in range(0, len(groups), batch_size):
            chunk = groups[start:start + batch_size]
            embeds = encode_batch([images[idx[0]] for _, idx in chunk])
            for (tag, idx), emb in zip(chunk, embeds):
                emb = emb[None]
                if isinstance(tag, tuple):
                    self.put(tag[0], tag[1], emb)
                for i in idx:
                    out[i] = emb
        return out

    def clear(self) -> None:
        """Drop every entry (statistics are kept)."""
        self._store.clear()

    def stats(self) -> dict:
        return dict(entries=len(self), hits=self.hits, misses=self.misses,
                    stale=self.stale)
