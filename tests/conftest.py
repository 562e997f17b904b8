"""Session-wide fixtures: an offline environment, a tiny SynthReason world + tiny LLaVA, and
the adapter tests' tiny LLaVA / Qwen2-VL (a small fixed corpus, the builders' default sizes)."""
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Tests never reach the network: transformers / huggingface_hub stay offline.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


@pytest.fixture(scope='session')
def tiny_sam_arch():
    """A one-block SAM on 64 px images (prompt width 32): random weights, fast on CPU (the
    ``tiny`` preset, which ``tools/misc/make_tiny_sam.py`` saves as a stand-in)."""
    from crseg.models.refiners.sam_arch import SAM_ARCH_PRESETS
    return dict(SAM_ARCH_PRESETS['tiny'])


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    """6 train + 4 val SynthReason images of 96 px, written by the real converter."""
    out = tmp_path_factory.mktemp('synth')
    subprocess.run([sys.executable, str(ROOT / 'tools/dataset_converters/synthreason.py'),
                    '--out', str(out), '--num-train', '6', '--num-val', '4', '--seed', '3',
                    '--img-size', '96'], check=True, capture_output=True)
    return out


@pytest.fixture(scope='session')
def tiny_llava_dir(tmp_path_factory, synth_root):
    """A tiny LLaVA folder whose tokenizer is trained on the tiny world's texts."""
    from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
    from crseg.testing import build_tiny_llava
    texts = [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION]
    for f in sorted(glob.glob(str(synth_root / '*' / '*.json'))):
        with open(f, encoding='utf-8') as fh:
            ann = json.load(fh)
        texts += ann['text'] + [v for g in ann['glcot'] for v in g.values()]
    return build_tiny_llava(str(tmp_path_factory.mktemp('llava')), texts, image_size=64,
                            patch=16, vision_width=32, vision_layers=1, text_width=32,
                            text_layers=2, heads=2, vocab_size=300)


# The adapter tests (tests/models/mllms, tests/models/eap) use the builders' default sizes
# (224 px images, 14x14 LLaVA tokens) and a tokenizer trained on this small corpus.
ADAPTER_CORPUS = [
    'scene: a kitchen with a table.\nregion: a red cup near the window.\nanswer: the red cup',
    'what can hold hot tea? where is the lamp on the left side of the room?',
    'scene: a street. region: the car parked at the corner. answer: the blue car']


@pytest.fixture(scope='session')
def adapter_llava_dir(tmp_path_factory):
    """A tiny LLaVA folder at the builder's default size (224 px, 196 image tokens)."""
    from crseg.testing import build_tiny_llava
    return build_tiny_llava(str(tmp_path_factory.mktemp('adapter_llava')), ADAPTER_CORPUS)


@pytest.fixture(scope='session')
def adapter_qwen2vl_dir(tmp_path_factory):
    """A tiny Qwen2-VL folder at the builder's default size."""
    from crseg.testing import build_tiny_qwen2vl
    return build_tiny_qwen2vl(str(tmp_path_factory.mktemp('adapter_qwen2vl')), ADAPTER_CORPUS)


@pytest.fixture
def adapter_images():
    """Two seeded RGB images of different shapes (200x300 landscape, 120x90 portrait)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (200, 300, 3), dtype=np.uint8),
            rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)]


def _last_val_metric(work_dir, key='mIoU'):
    """(step, value) of the last ``key`` logged in any run folder of ``work_dir``
    (mmengine's ``<run>/vis_data/scalars.json``); an assertion error when none is."""
    values = []
    for scalars in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in scalars.read_text().splitlines():
            rec = json.loads(line)
            if key in rec:
                values.append((rec['step'], rec[key]))
    assert values, f'no {key} logged under {work_dir}'
    return max(values)


@pytest.fixture(scope='session')
def last_val_metric():
    """The helper reading a training run's last validation metric, as a fixture."""
    return _last_val_metric
