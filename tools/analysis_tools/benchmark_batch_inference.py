"""Throughput of CR-Seg inference at several batch sizes, side by side in one run.

``predict`` is batch-invariant (same answers and masks at any batch size; see
``tests/models/segmentors/test_batch_invariance.py``), so the evaluation batch size
(``test_dataloader.batch_size``) is only a speed knob. This script measures it: the same
samples go through ``model.predict`` in chunks of each batch size, the sizes interleaved in every
repeat (so a busy machine slows them alike), and it prints samples/s per size, the ratio to the
first size, whether the answers agreed and how many mask pixels differ (float32 rounding can
flip a pixel whose refined logit sits at the 0 threshold).

Model: the tiny default (``configs/crseg/crseg_tinyllava_tinysam_synthreason.py``). Its MLLM
folder (``data/tiny_models/llava_synthreason``, made by ``make demo``) is used when present,
else a random-weight tiny LLaVA of the same shape is built in a temporary folder (tokenizer
trained on the samples' texts); ``--checkpoint`` loads trained weights. Samples: ``--num``
SynthReason val images generated in memory (224 px, the dataset's defaults; no files needed).
With random weights the MLLM rarely emits EOS, so every sample generates ``max_new_tokens``; a
trained model stops earlier and batches then wait for their longest answer.

Threads: torch uses ``OMP_NUM_THREADS`` threads (all cores when unset); set it to the number of
cores the job may use, e.g. on the 2-core CPU machine::

    OMP_NUM_THREADS=2 python tools/analysis_tools/benchmark_batch_inference.py --num 32 \
        --batch-sizes 1 8 --repeats 2

    python tools/analysis_tools/benchmark_batch_inference.py --checkpoint work_dirs/demo/...pth
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

DEFAULT_CONFIG = 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--checkpoint', default=None, help='trained weights (optional)')
    p.add_argument('--mllm', default=None,
                   help="MLLM folder (default: the config's, or a tiny one built here)")
    p.add_argument('--num', type=int, default=32, help='samples (SynthReason val, seed 0)')
    p.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    p.add_argument('--repeats', type=int, default=2, help='median over this many passes')
    p.add_argument('--max-new-tokens', type=int, default=None,
                   help="generation length (default: the config's)")
    p.add_argument('--device', default=None, help='default: cuda when available, else cpu')
    return p.parse_args(argv)


def make_samples(num: int):
    """``num`` SynthReason val samples as (uint8 BGR [3, H, W] tensor, SegDataSample)."""
    from mmseg.structures import SegDataSample

    from crseg.datasets.synthreason import generate_sample
    items = []
    for i in range(num):
        img, ann, _ = generate_sample(0, 'val', i)
        s = SegDataSample(metainfo=dict(query=ann['text'][0], img_path=f'synthreason_val_{i}',
                                        ori_shape=img.shape[:2], img_shape=img.shape[:2]))
        items.append((torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), s,
                      ann))
    return items


def tiny_mllm(items, out_dir: str) -> str:
    """A random-weight tiny LLaVA of the demo's shape (see tools/demo.sh)."""
    from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
    from crseg.testing import build_tiny_llava
    texts = [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION]
    for _, _, ann in items:
        texts += ann['text'] + [v for g in ann.get('glcot', []) for v in g.values()]
    return build_tiny_llava(out_dir, texts, image_size=160, patch=16, vocab_size=1024, seed=0)


def build_model(args, items, tmp: str):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from crseg.registry import MODELS
    from crseg.utils import allow_mmengine_checkpoint_globals
    init_default_scope('crseg')
    cfg = Config.fromfile(args.config)
    mllm = args.mllm or cfg.model.mllm.get('pretrained')
    if not mllm or not osp.isdir(mllm):
        mllm = tiny_mllm(items, osp.join(tmp, 'tiny_llava'))
    cfg.model.mllm.pretrained = mllm
    if args.max_new_tokens:
        cfg.model.mllm.max_new_tokens = args.max_new_tokens
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        allow_mmengine_checkpoint_globals()
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    return model.to(args.device).eval(), mllm


def run(model, items, batch_size: int, device: str):
    """One pass over ``items`` in chunks; returns (seconds, [(text, mask)] per sample)."""
    import copy
    if hasattr(model.refiner, 'cache'):
        model.refiner.cache.clear()  # each pass encodes its images itself
    out = []
    start = time.perf_counter()
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        data = model.data_preprocessor(dict(
            inputs=[img for img, _, _ in chunk],
            data_samples=[copy.deepcopy(s) for _, s, _ in chunk]), False)
        for s in model.predict(**data):
            out.append((s.metainfo['pred_text'], s.pred_sem_seg.data.cpu()))
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main(argv=None):
    args = parse_args(argv)
    from crseg.apis.inferencer import default_device
    args.device = args.device or default_device()  # as tools/demo.py: cuda when available
    items = make_samples(args.num)
    with tempfile.TemporaryDirectory() as tmp:
        model, mllm = build_model(args, items, tmp)
        run(model, items[:max(args.batch_sizes)], max(args.batch_sizes), args.device)  # warm-up
        times = {bs: [] for bs in args.batch_sizes}
        outputs = {}
        for _ in range(args.repeats):
            for bs in args.batch_sizes:
                sec, outputs[bs] = run(model, items, bs, args.device)
                times[bs].append(sec)
    ref_bs = args.batch_sizes[0]
    base = args.num / statistics.median(times[ref_bs])
    print(f'config {args.config}, MLLM {mllm}, checkpoint {args.checkpoint}, '
          f'{args.num} samples, max_new_tokens {model.mllm.max_new_tokens}, '
          f'{torch.get_num_threads()} threads (OMP_NUM_THREADS='
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), device {args.device}, "
          f'{args.repeats} repeats (median)')
    print(f"{'batch':>5} | {'samples/s':>9} | {'ratio':>5} | {'s/sample':>8} | same answers | "
          'mask pixels differing (masks)')
    for bs in args.batch_sizes:
        rate = args.num / statistics.median(times[bs])
        pairs = list(zip(outputs[ref_bs], outputs[bs]))
        same = sum(a[0] == b[0] for a, b in pairs)
        pix = [int((a[1] != b[1]).sum()) for a, b in pairs]
        print(f'{bs:>5} | {rate:>9.2f} | {rate / base:>5.2f} | {1 / rate:>8.3f} | '
              f'{same}/{len(pairs)} | {sum(pix)} ({sum(p > 0 for p in pix)})')


if __name__ == '__main__':
    main()
