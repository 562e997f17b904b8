"""Profile the tiny default (`make demo` stage 2): N training iterations and M test samples.

Builds the model, the train/test dataloaders and the optimizer from the config the way
``tools/train.py`` does (no Runner hooks, no checkpoints), runs one warm-up iteration, then
``--iters`` training iterations and ``--test-samples`` test samples under cProfile, and
prints where the time goes: a per-stage table (data loading, MLLM forward, capture, coarse
head, point sampler, refiner, losses, backward/optimizer step, generation at test time)
measured as the cumulative time of the functions that implement each stage, then the top
Python functions by own and cumulative time. ``--torch`` also prints torch.profiler's top
operators. Weights are the random tiny ones unless ``--cfg-options load_from=...`` is
passed (time does not depend on the values).

Example (2 shared CPU cores: ~1 min)::

    OMP_NUM_THREADS=1 python tools/analysis_tools/profile_tiny_default.py --iters 10 \
        --test-samples 4 --cfg-options model.mllm.pretrained=data/tiny_models/llava_synthreason \
        data_root=data/synthreason train_dataloader.dataset.data_root=data/synthreason \
        test_dataloader.dataset.data_root=data/synthreason
"""
import argparse
import cProfile
import io
import logging
import pstats
import time

import torch
from mmengine.config import Config, DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from crseg.registry import MODELS
from crseg.setup_env import register_all_modules

DEFAULT_CONFIG = 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py'

# stage -> substrings of "file:function" in cProfile's keys; the largest cumulative time
# among the matching functions is the stage's time (nested calls are not double counted).
STAGES = [
    ('data loading (next(dataloader))', ['dataloader.py:__next__']),
    ('data preprocessor', ['data_preprocessor.py:forward']),
    ('model forward (loss)', ['segmentors/crseg.py:loss']),
    ('  MLLM forward (train: teacher-forced)', ['mllms/base.py:forward']),
    ('  MLLM input encoding / tokenisation', ['mllms/base.py:encode', 'encode_batch',
                                              'apply_chat_template', 'tokenization_utils']),
    ('  attention capture', ['eap/capture.py']),
    ('  coarse head', ['coarse_head.py:forward']),
    ('  coarse-head loss', ['coarse_head.py:loss']),
    ('  point sampler', ['points.py:__call__', 'points.py:sample']),
    ('  refiner (SAM)', ['sam.py:refine']),
    ('    SAM image encoder', ['image_encoder.py:forward']),
    ('    SAM mask decoder', ['mask_decoder.py:forward']),
    ('  mask losses', ['mask_losses.py:mask_losses']),
    ('backward', ['_tensor.py:backward']),
    ('optimizer step (+clip)', ['optimizer_wrapper.py:step']),
    ('test: predict (generation + refine)', ['segmentors/crseg.py:predict']),
    ('  generation', ['generation/utils.py:generate']),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    p.add_argument('--iters', type=int, default=10, help='profiled training iterations')
    p.add_argument('--test-samples', type=int, default=4, help='profiled test samples')
    p.add_argument('--top', type=int, default=25, help='rows of the function tables')
    p.add_argument('--torch', action='store_true', help='also print torch.profiler ops')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return p.parse_args()


def build(cfg, seed, test=True):
    """Model (train mode), optimizer wrapper, train and (``test``) test dataloaders."""
    register_all_modules()
    init_default_scope('crseg')
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    logging.disable(logging.INFO)  # init_weights logs one line per parameter
    model.init_weights()
    logging.disable(logging.NOTSET)
    if cfg.get('load_from'):
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, cfg.load_from, map_location='cpu', strict=False)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    train_loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    test_loader = None
    if test:
        test_cfg = dict(cfg.test_dataloader)
        test_cfg['batch_size'] = 1
        test_loader = Runner.build_dataloader(test_cfg, seed=seed)
    return model, optim, train_loader, test_loader


def run_train(model, optim, it, n):
    model.train()
    for _ in range(n):
        model.train_step(next(it), optim)


def run_test(model, it, n):
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            model.test_step(next(it))


def stage_table(stats: pstats.Stats, total: float):
    rows = []
    for name, keys in STAGES:
        best = 0.0
        for (fname, _, func), (_, _, _, ct, _) in stats.stats.items():
            label = f'{fname}:{func}'
            if any(k in label for k in keys):
                best = max(best, ct)
        rows.append((name, best))
    lines = [f'{"stage":42s} {"s":>8s} {"share":>7s}']
    for name, t in rows:
        lines.append(f'{name:42s} {t:8.3f} {100 * t / max(total, 1e-9):6.1f}%')
    return '\n'.join(lines)


def profile(label, fn, top, use_torch):
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    fn()
    pr.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(pr)
    print(f'\n===== {label}: {total:.2f} s wall (cProfile overhead included) =====')
    print(stage_table(stats, total))
    for key in ('tottime', 'cumulative'):
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats(key).print_stats(top)
        body = buf.getvalue()
        print(f'\n--- top {top} by {key} ---')
        print(body[body.find('   ncalls'):])
    if use_torch:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fn()
        print(f'\n--- torch.profiler, {label}: top ops by self CPU time ---')
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=top))
    return total


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    model, optim, train_loader, test_loader = build(cfg, args.seed)
    train_it, test_it = iter(train_loader), iter(test_loader)
    run_train(model, optim, train_it, 1)  # warm-up: lazy inits, allocator
    run_test(model, test_it, 1)
    bs = cfg.train_dataloader.batch_size
    t_train = profile(f'{args.iters} training iterations (batch {bs})',
                      lambda: run_train(model, optim, train_it, args.iters), args.top,
                      args.torch)
    t_test = profile(f'{args.test_samples} test samples',
                     lambda: run_test(model, test_it, args.test_samples), args.top, args.torch)
    print(f'\ntraining: {t_train / max(args.iters, 1):.3f} s/iter '
          f'({args.iters / t_train:.2f} it/s) under cProfile; test: '
          f'{t_test / max(args.test_samples, 1):.3f} s/sample. Timings on a CPU shared with '
          'other jobs vary run to run.')


if __name__ == '__main__':
    main()
