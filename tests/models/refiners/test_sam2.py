"""Sam2Refiner vs transformers' Sam2Model / Sam2Processor (shared tests: hf_sam_cases.py)."""
import pytest

from crseg.models.refiners import Sam2Refiner
from hf_sam_cases import *  # noqa: F401,F403  (the shared tests)


@pytest.fixture
def refiner_cls():
    return Sam2Refiner


@pytest.fixture
def family():
    return 'sam2'


@pytest.fixture
def other_family():
    return 'sam3_tracker'


def test_random_hiera_position_embedding_is_not_zero():
    """transformers initialises Hiera's pos_embed to zeros; from scratch the refiner draws it
    (as SAMRefiner does for SAM), a pretrained folder keeps its own."""
    from crseg.testing.tiny_sam import tiny_hf_sam_config
    ref = Sam2Refiner(config=tiny_hf_sam_config('sam2'))
    pos = ref.model.vision_encoder.backbone.pos_embed
    assert pos.abs().sum() > 0 and pos.std().item() == pytest.approx(0.02, rel=0.3)
