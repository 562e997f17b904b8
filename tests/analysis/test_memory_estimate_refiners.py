"""Memory-estimate presets of the transformers refiners (SAM 2.1-L, SAM 3 tracker): counts exact
from the classes on the meta device, and split as the refiners freeze them."""
from pathlib import Path

import pytest

from crseg.analysis import memory_estimate as M

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('name', sorted(M.HF_REFINER_PRESETS))
def test_preset_counts_every_parameter_of_the_class(name):
    model = M.HF_REFINER_PRESETS[name]()
    assert next(model.parameters()).device.type == 'meta'
    comps = M.hf_refiner_components(name, model)
    assert sum(c.params for c in comps) == sum(p.numel() for p in model.parameters())
    decoder = sum(p.numel() for p in model.mask_decoder.parameters())
    assert [c.trainable for c in comps] == [0, 0, decoder]
    # the sizes the checkpoints are known by (image-only model, no video memory modules)
    total = sum(c.params for c in comps)
    assert {'sam2.1-l': 216_924_865, 'sam3-tracker': 458_260_369}[name] == total
    if name == 'sam2.1-l':
        assert total < 224.4e6  # the published SAM 2.1-L size includes the video memory


@pytest.mark.parametrize('family,cls', [('sam2', 'Sam2Refiner'),
                                        ('sam3_tracker', 'Sam3TrackerRefiner')])
def test_split_matches_what_the_refiner_trains(family, cls):
    """The preset's frozen / trained split is the refiner's default with a checkpoint."""
    from crseg.models import refiners
    from crseg.testing.tiny_sam import tiny_hf_sam_config
    ref = getattr(refiners, cls)(config=tiny_hf_sam_config(family), freeze_image_encoder=True)
    comps = M.hf_refiner_components('tiny', ref.model)
    assert sum(c.params for c in comps) == sum(p.numel() for p in ref.parameters())
    assert sum(c.trainable for c in comps) == sum(p.numel() for p in ref.parameters()
                                                  if p.requires_grad)


def test_cli_preset_with_a_transformers_refiner():
    from crseg.testing.tools import load_tool
    tool = load_tool('tools/analysis_tools/estimate_memory.py', 'estimate_memory')
    text = tool.main(['--preset', 'llava-1.5-7b+sam2.1-l', '--batch', '1', '--strategy',
                      'deepspeed_zero2', '--gpus', '8'])
    assert '| sam2.1-l.mask_decoder | 4,215,109 | 4,215,109 |' in text
    with pytest.raises(ValueError, match='sam3-tracker'):
        M.preset_profile('llava-1.5-7b+sam-2')
