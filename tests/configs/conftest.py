"""Fixtures shared by the real-size config tests: tiny stand-ins of the real HF classes."""
import pytest


@pytest.fixture(scope='module')
def tiny_qwen25_dir(tmp_path_factory):
    from crseg.glcot import GLCOT_INSTRUCTION
    from crseg.testing import build_tiny_qwen2vl
    return build_tiny_qwen2vl(str(tmp_path_factory.mktemp('qwen25')),
                              [GLCOT_INSTRUCTION, 'scene: region: answer: the red circle'],
                              vision_width=32, vision_layers=1, text_width=32, text_layers=2,
                              heads=2, kv_heads=1, vocab_size=300, qwen25=True)
