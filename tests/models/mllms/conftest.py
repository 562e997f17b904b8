"""Tiny offline LLaVA / Qwen2-VL folders shared by the adapter tests (built once per session)."""
import numpy as np
import pytest

from crseg.testing import build_tiny_llava, build_tiny_qwen2vl

CORPUS = ['scene: a kitchen with a table.\nregion: a red cup near the window.\nanswer: the red cup',
          'what can hold hot tea? where is the lamp on the left side of the room?',
          'scene: a street. region: the car parked at the corner. answer: the blue car']


@pytest.fixture(scope='session')
def tiny_llava_dir(tmp_path_factory):
    return build_tiny_llava(str(tmp_path_factory.mktemp('tiny_llava')), CORPUS)


@pytest.fixture(scope='session')
def tiny_qwen_dir(tmp_path_factory):
    return build_tiny_qwen2vl(str(tmp_path_factory.mktemp('tiny_qwen2vl')), CORPUS)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (200, 300, 3), dtype=np.uint8),
            rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)]
