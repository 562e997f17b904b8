"""Refiners with a heavy image encoder: parts frozen by config and an embedding cache.

SAM-family refiners share one shape: an image encoder (run once per image), a prompt encoder
and a mask decoder, each frozen or trained by config (``self.frozen[part]``), and an
:class:`~.embedding_cache.EmbeddingCache` of image embeddings. The rules that keep that cache
right live here once:

* frozen parts stay in eval mode whatever ``train()`` is asked (their dropout / norm layers
  never switch to training behaviour);
* cached embeddings are used only while they cannot go stale: the encoder is frozen, or the
  model is in eval mode; switching to training with a trainable encoder clears the cache.
"""
from typing import List

from torch import nn

from .base import BaseRefiner


class CachedEncoderRefiner(BaseRefiner):
    """Base of the SAM-family refiners (see the module docstring).

    Subclasses set ``self.frozen = dict(image_encoder=, prompt_encoder=, mask_decoder=)`` and
    ``self.cache`` and implement :meth:`part_modules`.
    """

    def part_modules(self, part: str) -> List[nn.Module]:
        """The modules that make up ``part`` (a key of ``self.frozen``)."""
        raise NotImplementedError(f'{type(self).__name__}.part_modules')

    @property
    def encoder_trainable(self) -> bool:
        return not self.frozen['image_encoder']

    @property
    def use_cache(self) -> bool:
        """Cached embeddings are valid only while the encoder cannot change."""
        return self.cache.enabled and (not self.encoder_trainable or not self.training)

    def train(self, mode: bool = True):
        """Set train/eval mode, keeping frozen parts in eval mode."""
        super().train(mode)
        for part, frozen in self.frozen.items():
            if frozen:
                for module in self.part_modules(part):
                    if isinstance(module, nn.Module):
                        module.eval()
        if mode and self.encoder_trainable:
            self.cache.clear()
        return self


__all__ = ['CachedEncoderRefiner']
