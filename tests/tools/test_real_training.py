"""The README's real-data route ("Train on real data") end to end on CPU.

A workspace laid out as the README tells a user (the commands run with it as the working
directory, so the configs' own relative paths are used unchanged)::

    data/reason_seg/ReasonSeg/{train,val,test}/   LISA's format, *no* glcot fields
    data/refer_seg/{refcoco,refcoco+,refcocog}/    refer files; COCO images in
    data/refer_seg/images/mscoco/images/train2014/
    data/glcot/*.jsonl                             sidecars: ReasonSeg's from the annotator,
                                                   RefCOCO/+/g's from the template tool
    data/weights/llava-1.5-7b-hf, Qwen2.5-VL-7B-Instruct, sam_vit_h_4b8939.pth
                                                   tiny random-weight stand-ins of the same classes

then ``tools/train.py CONFIG`` for 2 iterations and ``tools/test.py CONFIG CKPT``. The only
``--cfg-options`` are what a CPU and 2-layer stand-ins need (listed in ``cpu_options``); data
paths, datasets, sampler, LoRA, freezing, heads and losses are the configs' own.
"""
import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch


ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'annotation'))
from glcot_stub import StubServer  # noqa: E402

COCO_DIR = 'data/refer_seg/images/mscoco/images/train2014'
CONFIGS = {  # both families, both recipes (the mix also runs the RefCOCO template sidecars)
    'llava': 'configs/crseg/crseg_llava15_7b_samvith_10k_mix.py',
    'qwen25': 'configs/crseg/crseg_qwen25vl_7b_samvith_10k_reasonseg.py',
}
REASONSEG_TEXTS = {
    'train': [('kitchen', ['the thing used to boil water', 'what keeps food cold?']),
              ('desk', ['something unparseable to write with'])],
    'val': [('garden', ['the plant that needs the least water'])],
    'test': [('street', ['what tells cars to stop?'])],
}


def square_image(path, seed, box=(8, 8, 30, 26), size=(40, 56)):
    img = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    cv2.rectangle(img, box[:2], box[2:], (0, 0, 255), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def write_reasonseg(ws):
    """LISA's release format: text / is_sentence / shapes only."""
    root = ws / 'data/reason_seg/ReasonSeg'
    for split, items in REASONSEG_TEXTS.items():
        for k, (name, texts) in enumerate(items):
            square_image(root / split / f'{name}.jpg', k)
            (root / split / f'{name}.json').write_text(json.dumps(dict(
                text=texts, is_sentence=True,
                shapes=[dict(label='target', points=[[8, 8], [30, 8], [30, 26], [8, 26]])])))
    return root


def annotate_reasonseg(ws):
    """The README's annotate step: ``glcot_annotate.py`` on the train split, as a user runs it,
    with an OpenAI-compatible teacher on 127.0.0.1 (the scripted stub of
    ``tests/annotation/glcot_stub.py``: tiny random models never write parseable GLCoT text).
    The query with "unparseable" gets a reply the quality gate rejects, so the sidecar leaves
    it out and the dataset skips it."""
    with StubServer() as server:
        run(ws, [str(ROOT / 'tools/dataset_converters/glcot_annotate.py'),
                 'data/reason_seg/ReasonSeg/train', '--out', 'data/glcot/reasonseg_train.jsonl',
                 '--api-base', server.url('ok'), '--model', 'stub', '--no-progress',
                 '--retries', '0'])
    report = json.loads((ws / 'data/glcot/reasonseg_train.report.json').read_text())
    assert report['annotated'] == 2 and report['items'] == 3, report


def write_refer(ws):
    """refcoco / refcoco+ (unc) and refcocog (umd), two COCO images, train refs only."""
    images = [dict(id=k, file_name=f'COCO_train2014_00000000000{k}.jpg', height=40, width=56)
              for k in (1, 2)]
    for k, im in enumerate(images):
        square_image(ws / COCO_DIR / im['file_name'], 10 + k)
    poly = [[8.0, 8.0, 30.0, 8.0, 30.0, 26.0, 8.0, 26.0]]
    anns = [dict(id=11, image_id=1, category_id=1, iscrowd=0, segmentation=poly),
            dict(id=12, image_id=1, category_id=3, iscrowd=0, segmentation=poly),
            dict(id=21, image_id=2, category_id=3, iscrowd=0, segmentation=poly)]
    cats = [dict(id=1, name='person'), dict(id=3, name='car')]
    refs = [dict(ref_id=1, ann_id=11, image_id=1, split='train',
                 sentences=[dict(sent='man by the car'), dict(sent='left person')]),
            dict(ref_id=2, ann_id=21, image_id=2, split='train', sentences=[dict(sent='red car')])]
    for dataset, split_by in (('refcoco', 'unc'), ('refcoco+', 'unc'), ('refcocog', 'umd')):
        d = ws / 'data/refer_seg' / dataset
        d.mkdir(parents=True)
        (d / 'instances.json').write_text(json.dumps(dict(images=images, annotations=anns,
                                                          categories=cats)))
        with open(d / f'refs({split_by}).p', 'wb') as f:
            pickle.dump(refs, f, protocol=2)


def run_template_tool(ws):
    """The README's teacher-free RefCOCO step (the tool's main, in-process)."""
    path = ROOT / 'tools/dataset_converters/refcoco_glcot_templates.py'
    spec = importlib.util.spec_from_file_location('refcoco_glcot_templates_e2e', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for dataset in ('refcoco', 'refcoco+', 'refcocog'):
        tool.main(['--data-root', str(ws / 'data/refer_seg'), '--dataset', dataset,
                   '--out', str(ws / f'data/glcot/{dataset}_train.jsonl')])


def corpus(ws):
    from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
    texts = [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION]
    for side in sorted((ws / 'data/glcot').glob('*_train.jsonl')):  # not the rejects lists
        for line in side.read_text().splitlines():
            rec = json.loads(line)
            texts += [rec['query'], *rec['glcot'].values()]
    return texts


@pytest.fixture(scope='module')
def workspace(tmp_path_factory, tiny_sam_arch):
    ws = tmp_path_factory.mktemp('realdata')
    write_reasonseg(ws)
    annotate_reasonseg(ws)
    write_refer(ws)
    run_template_tool(ws)
    from crseg.testing import build_tiny_llava, build_tiny_qwen2vl
    from crseg.models.refiners import build_sam
    weights = ws / 'data/weights'
    texts = corpus(ws)
    small = dict(vision_width=32, vision_layers=1, text_width=32, text_layers=2, heads=2,
                 vocab_size=300)
    build_tiny_llava(str(weights / 'llava-1.5-7b-hf'), texts, image_size=64, patch=16, **small)
    build_tiny_qwen2vl(str(weights / 'Qwen2.5-VL-7B-Instruct'), texts, kv_heads=1, qwen25=True,
                       **small)
    torch.manual_seed(0)
    torch.save(build_sam(tiny_sam_arch).state_dict(), weights / 'sam_vit_h_4b8939.pth')
    return ws


def option(key, value):
    if isinstance(value, (list, tuple)):
        return f'{key}=[{",".join(str(v) for v in value)}]'
    return f'{key}={value}'


def cpu_options(train):
    """What CPU and the tiny stand-ins need, nothing else.

    * bf16 weights -> fp32; the stand-ins have 2 LLM layers, so capture layers 0 and 1;
    * random stand-ins rarely stop on their own: generation is capped at 16 tokens;
    * SAM: nothing -- the stand-in at the config's checkpoint path is read as what it is (the
      refiner takes the architecture from the file; it took the arch dict's 12 keys before);
    * training only: 2 iterations logged each (so the test sees their losses), and mmengine's
      AmpOptimWrapper (CUDA/NPU only) -> a plain OptimWrapper, the flag ``tools/train.py``
      names on a machine without a GPU (the config's optimizer, clipping and accumulation
      are kept; the AMP-only keys are dropped, logged).
    """
    opts = ['model.mllm.torch_dtype=float32', 'model.capture.layers=[0,1]',
            'model.mllm.max_new_tokens=16']
    if train:
        opts += ['train_cfg.max_iters=2', 'default_hooks.logger.interval=1',
                 'optim_wrapper.type=OptimWrapper']
    return opts


def run(ws, args):
    env = dict(os.environ, PYTHONPATH=f'{ROOT}{os.pathsep}' + os.environ.get('PYTHONPATH', ''),
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, *args], cwd=ws, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])
    return r.stdout + r.stderr


@pytest.mark.parametrize('family', sorted(CONFIGS))
def test_readme_training_command_end_to_end(workspace, family, tiny_sam_arch):
    config = str(ROOT / CONFIGS[family])
    name = Path(config).stem
    log = run(workspace, [str(ROOT / 'tools/train.py'), config, '--cfg-options',
                          *cpu_options(train=True)])
    work = workspace / 'work_dirs' / name
    ckpt = work / 'iter_2.pth'
    assert ckpt.is_file(), log[-3000:]
    # the queries the sidecar leaves out are skipped and counted, the rest train
    assert 'skipped 1 of 3 queries with no usable GLCoT entry' in log
    if family == 'llava':  # the mix: 4 datasets drawn 1:1:1:1, RefCOCO targets from templates
        assert 'DatasetRatioSampler: ReasonSegDataset[0] 25.0% of draws (2 samples)' in log
        assert log.count('records unused') == 4
    losses = [json.loads(line) for p in sorted(work.glob('*/vis_data/scalars.json'))
              for line in p.read_text().splitlines()]
    steps = [rec for rec in losses if 'loss_lm' in rec]
    assert steps and all(np.isfinite(rec['loss']) for rec in steps)

    out = run(workspace, [str(ROOT / 'tools/test.py'), config, str(ckpt), '--work-dir',
                          str(workspace / f'test_{family}'), '--cfg-options',
                          *cpu_options(train=False)])
    assert 'gIoU' in out and 'cIoU' in out, out[-3000:]
