"""SAM 2 / SAM 2.1 refiner on transformers' ``Sam2Model`` (see :mod:`.hf_sam`)."""
from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model

from crseg.registry import MODELS
from .hf_sam import HFSamRefiner


@MODELS.register_module()
class Sam2Refiner(HFSamRefiner):
    """Refine a coarse mask with SAM 2 or SAM 2.1 (transformers ``Sam2Model``, a
    :class:`~crseg.models.refiners.base.BaseRefiner`).

    ``pretrained=`` a local copy of a ``model_type='sam2'`` checkpoint (e.g.
    ``facebook/sam2.1-hiera-large``, ``facebook/sam2-hiera-large``), or ``config=`` a
    ``Sam2Config`` dict for random weights. Takes points, boxes, mask logits and learned
    prompt embeddings (appended to the sparse prompt, so :attr:`embed_dim` is the prompt
    encoder's hidden size, 256). Input: the whole image resized to 1024 px square; mask
    prompt 256 px. Arguments: :class:`~crseg.models.refiners.hf_sam.HFSamRefiner`.
    """

    model_class = Sam2Model
    config_class = Sam2Config
    image_processor_class = Sam2ImageProcessor
    model_types = ('sam2', )
    hints = {'sam3_tracker': 'use Sam3TrackerRefiner', 'sam3_video': 'use Sam3TrackerRefiner'}
