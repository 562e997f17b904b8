"""SAM 3 refiner on transformers' ``Sam3TrackerModel`` (see :mod:`.hf_sam`)."""
from transformers import Sam3ImageProcessor, Sam3TrackerConfig, Sam3TrackerModel

from crseg.registry import MODELS
from .hf_sam import HFSamRefiner


@MODELS.register_module()
class Sam3TrackerRefiner(HFSamRefiner):
    """Refine a coarse mask with SAM 3's tracker (transformers ``Sam3TrackerModel``, a
    :class:`~crseg.models.refiners.base.BaseRefiner`).

    Why the tracker: ``Sam3Model`` (the detector) is prompted with *concepts* (a text
    phrase and/or exemplar boxes) and returns every instance of the concept; it takes no
    points and no mask prompt. ``Sam3TrackerModel`` is SAM 3's promptable visual
    segmentation (SAM 2's interface on the SAM 3 image encoder): points, boxes and a mask
    prompt, exactly the prompts CR-Seg gives.

    ``pretrained=`` a local copy of a ``model_type='sam3_tracker'`` checkpoint, or of the
    full ``facebook/sam3`` folder (``'sam3_video'``: transformers reads its
    ``tracker_config`` and ignores the detector weights; not covered by the tests, which
    use ``'sam3_tracker'`` folders); or ``config=`` a ``Sam3TrackerConfig`` dict for random
    weights. Takes points, boxes, mask logits and learned prompt embeddings (appended to the
    sparse prompt, :attr:`embed_dim` = the prompt encoder's hidden size, 256). Input: the
    whole image resized to 1008 px square; mask prompt 288 px. Arguments:
    :class:`~crseg.models.refiners.hf_sam.HFSamRefiner`.
    """

    model_class = Sam3TrackerModel
    config_class = Sam3TrackerConfig
    image_processor_class = Sam3ImageProcessor
    model_types = ('sam3_tracker', 'sam3_video')
    hints = {'sam2': 'use Sam2Refiner',
             'sam3': 'Sam3Model takes concept prompts only (no points): give a sam3_tracker or '
                     'the full sam3_video (facebook/sam3) checkpoint'}
