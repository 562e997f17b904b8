"""The refiner contract: images + one prompt set per image -> one mask per image.

Every refiner (SAM, identity, and the SAM 2 / SAM 3 ones to come) is a :class:`BaseRefiner`:

* it is called as ``refiner(images, prompts)`` with ``prompts`` a :class:`RefinerPrompts`
  and returns a :class:`RefinerOutput`; nothing else of a refiner is read from outside;
* it says which prompt kinds it uses in :attr:`BaseRefiner.accepts` (a subset of
  :data:`PROMPT_KINDS`); a prompt it does not accept raises a ``ValueError`` naming it (a
  silently dropped prompt would be a silently different method);
* a refiner that takes learned prompt embeddings (the ``[SEG]`` baseline's projected hidden
  state) gives their width in :attr:`BaseRefiner.embed_dim`; ``None`` means it takes none.

Coordinates are pixels of each *original* image (x, y), boxes xyxy; ``mask_logits`` cover the
original image (or, with ``mask_geometry``, the box of the MLLM's view, see
:class:`~crseg.models.mllms.geometry.ImageGeometry`). Outputs are at each original size.
"""
from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

from mmengine.model import BaseModule
from torch import Tensor

#: The prompt kinds a refiner may accept.
PROMPT_KINDS = ('points', 'boxes', 'mask_logits', 'embeddings')


@dataclass
class RefinerPrompts:
    """One prompt set per image; every field is optional.

    Attributes:
        points: ``[B, K, 2]`` (x, y), or a list of ``[K_i, 2]`` / None.
        labels: ``[B, K]`` 1 foreground / 0 background / -1 padding (dropped), with ``points``.
        boxes: ``[B, 4]`` xyxy, or a list of ``[4]`` / None.
        mask_logits: ``[B, 1, h, w]`` or a list of ``[1, h, w]`` / None, any resolution.
        mask_geometry: per image, the ``ImageGeometry`` whose box ``mask_logits`` cover
            (None: the whole image).
        embeddings: learned sparse prompt tokens, ``[B, N, C]`` or a list of ``[N, C]`` /
            None, ``C == refiner.embed_dim`` (differentiable).
        keys: per image, a cache key for its embedding (e.g. ``img_path``), None = no cache.
    """
    points: Optional[object] = None
    labels: Optional[object] = None
    boxes: Optional[object] = None
    mask_logits: Optional[object] = None
    mask_geometry: Optional[Sequence] = None
    embeddings: Optional[object] = None
    keys: Optional[Sequence] = None

    def kinds(self) -> List[str]:
        """The prompt kinds present (``labels``, ``mask_geometry`` and ``keys`` ride along)."""
        return [k for k in PROMPT_KINDS if getattr(self, k) is not None]


@dataclass
class RefinerOutput:
    """What every refiner returns.

    Attributes:
        mask_logits: one ``[1, H_i, W_i]`` logit map per image, at its original size (> 0 is
            foreground).
        scores: ``[B]`` the refiner's own quality estimate of each mask (SAM's predicted IoU;
            1.0 where a refiner has none).
        low_res_logits: ``[B, 1, m, m]`` the masks at the refiner's prompt resolution.
    """
    mask_logits: List[Tensor]
    scores: Tensor
    low_res_logits: Tensor

    def __getitem__(self, key: str):
        """Read access by field name, e.g. ``out['mask_logits']``."""
        if key not in {f.name for f in fields(self)}:
            raise KeyError(f'RefinerOutput has no field {key!r}')
        return getattr(self, key)


class BaseRefiner(BaseModule):
    """Base of every refiner: ``forward(images, prompts) -> RefinerOutput``.

    Subclasses set :attr:`accepts` and implement :meth:`refine`; :meth:`forward` checks the
    prompt kinds against :attr:`accepts` first. ``weights_from`` (the file the weights came
    from, or None for random ones) feeds the checkpoint policy
    (:mod:`crseg.utils.checkpoint_policy`).
    """

    #: Prompt kinds this refiner uses (subset of :data:`PROMPT_KINDS`).
    accepts: tuple = ()
    #: Width of learned prompt embeddings, or None when ``'embeddings'`` is not accepted.
    embed_dim: Optional[int] = None
    weights_from: Optional[str] = None

    def forward(self, images, prompts: Optional[RefinerPrompts] = None) -> RefinerOutput:
        """Refine one prompt set per image.

        Args:
            images: a list of ``[3, H, W]`` uint8 RGB tensors (sizes may differ) or a
                ``[B, 3, H, W]`` uint8 tensor.
            prompts: a :class:`RefinerPrompts` (None: no prompt at all).
        """
        prompts = RefinerPrompts() if prompts is None else prompts
        if not isinstance(prompts, RefinerPrompts):
            raise TypeError(f'{type(self).__name__}: prompts must be a RefinerPrompts, got '
                            f'{type(prompts).__name__}')
        extra = [k for k in prompts.kinds() if k not in self.accepts]
        if extra:
            raise ValueError(f'{type(self).__name__} does not take {extra} prompts; it takes '
                             f'{list(self.accepts)}')
        return self.refine(images, prompts)

    def refine(self, images, prompts: RefinerPrompts) -> RefinerOutput:
        raise NotImplementedError(f'{type(self).__name__}.refine')

    @property
    def trainable(self) -> bool:
        """Whether any parameter would learn (a mask loss through it means something)."""
        return any(p.requires_grad for p in self.parameters())


__all__ = ['BaseRefiner', 'RefinerPrompts', 'RefinerOutput', 'PROMPT_KINDS']
