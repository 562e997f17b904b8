"""Benchmark EAP capture against plain SDPA and eager ``output_attentions`` (random weights).

    python tools/analysis_tools/benchmark_eap.py                 # Qwen2-VL-2B-like text stack
    python tools/analysis_tools/benchmark_eap.py --layers 4      # fewer layers (CPU time)
    python tools/analysis_tools/benchmark_eap.py --tiny          # quick smoke run

Default shapes: Qwen2-VL-2B's language model (28 layers, hidden 1536, 12 heads, 2 kv heads,
MLP 8960, vocab 151936), one 448x448 image -> 256 merged image tokens, a query padded to
``--seq-len`` (~1000) tokens in all, an answer of ``--answer-tokens`` tokens. The vision tower
is real-width but ``--vision-depth`` blocks deep (default 1): its cost is the same in every
variant, so keep it small to avoid flattering the ratios. Weights are random; the offline tiny
Qwen2-VL processor (BPE tokenizer trained on a few sentences) tokenizes.

Variants, side by side in one process, interleaved (round 0 = warm-up + memory, then
``--repeats`` rounds; times are medians, ratios the median of per-round ratios):
  plain   : the language model on transformers' 'sdpa' (no wrapper);
  capture : the EAP wrapper with all layers/heads captured for the answer rows;
  eager   : eager attention with ``output_attentions=True`` (what the capture replaces);
  gen / gen+capture : greedy generation of exactly ``--new-tokens`` tokens (EOS suppressed with
            ``min_new_tokens``). rows='answer' needs the row where the last token is the input:
            when generation stops at EOS that row already exists, but a response cut at
            ``max_new_tokens`` (the case forced here, i.e. the worst case) costs one extra
            single-token step. rows='pre_answer' never does.
Memory: on CPU, (a) the bytes of the attention tensors each method materializes and keeps
(eager: the returned [B,H,S,S] per layer; capture: the kept [R, L*H, n_img] image columns plus
one layer's transient [H,R,S] scores) and (b) the
growth of the process's peak RSS (ru_maxrss) after each variant, run in the order plain ->
capture -> eager so each increment is the extra peak that variant needed. On CUDA,
``torch.cuda.max_memory_allocated`` above the post-load baseline per variant.
"""
import argparse
import os
import os.path as osp
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
os.environ.setdefault('HF_HUB_OFFLINE', '1')

from crseg.models.eap.capture import EAPCapture, register_eap_attention  # noqa: E402
from crseg.testing.tiny_mllm import build_tiny_qwen2vl  # noqa: E402
from crseg.models.mllms.qwen2_vl import Qwen2VLAdapter  # noqa: E402

WORDS = ('the red cup near the window on a wooden table beside a lamp and two books while a '
         'cat sleeps under the chair in the warm kitchen').split()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='EAP capture vs SDPA vs eager')
    p.add_argument('--tiny', action='store_true', help='tiny shapes, quick run')
    p.add_argument('--layers', type=int, default=28)
    p.add_argument('--hidden', type=int, default=1536)
    p.add_argument('--heads', type=int, default=12)
    p.add_argument('--kv-heads', type=int, default=2)
    p.add_argument('--intermediate', type=int, default=8960)
    p.add_argument('--vocab', type=int, default=151936)
    p.add_argument('--vision-depth', type=int, default=1)
    p.add_argument('--image-size', type=int, default=448)
    p.add_argument('--seq-len', type=int, default=1000)
    p.add_argument('--answer-tokens', type=int, default=8)
    p.add_argument('--new-tokens', type=int, default=16)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--dtype', default='float32')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--skip-eager', action='store_true')
    args = p.parse_args(argv)
    if args.tiny:
        args.layers, args.hidden, args.heads, args.kv_heads = 2, 128, 4, 2
        args.intermediate, args.vocab, args.image_size, args.seq_len = 256, 2048, 224, 200
        args.new_tokens, args.repeats = 4, 5
    return args


def build_adapter(args, proc_dir):
    head_dim = args.hidden // args.heads
    quarter = head_dim // 4
    text = dict(hidden_size=args.hidden, intermediate_size=args.intermediate,
                num_hidden_layers=args.layers, num_attention_heads=args.heads,
                num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
                max_position_embeddings=32768, bos_token_id=None, eos_token_id=None,
                rope_parameters={'rope_type': 'default', 'rope_theta': 1e6,
                                 'mrope_section': [head_dim // 2 - 2 * quarter, quarter,
                                                   quarter]})
    vision = dict(depth=args.vision_depth, embed_dim=1280 if not args.tiny else 64,
                  num_heads=16 if not args.tiny else 4, hidden_size=args.hidden,
                  patch_size=14, spatial_merge_size=2)
    tiny = Qwen2VLAdapter(pretrained=proc_dir)
    ids = {k: getattr(tiny.hf_model.config, k) for k in (
        'image_token_id', 'video_token_id', 'vision_start_token_id', 'vision_end_token_id')}
    del tiny
    return Qwen2VLAdapter(config=dict(text_config=text, vision_config=vision, **ids),
                          processor=proc_dir, torch_dtype=args.dtype).eval().to(args.device)


def make_batch(adapter, args):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8)
    answer = ' '.join(WORDS[:args.answer_tokens])
    resp = f'answer: {answer}'
    n_words = 10
    while True:  # grow the query until the sequence reaches --seq-len tokens
        query = ' '.join(WORDS[i % len(WORDS)] for i in range(n_words))
        batch = adapter.build_inputs([image], [query], [resp], [(8, len(resp))], rows='answer')
        length = batch.model_inputs['input_ids'].shape[1]
        if length >= args.seq_len:
            break
        n_words += max(1, (args.seq_len - length) // 2)
    batch.model_inputs = {k: v.to(args.device) for k, v in batch.model_inputs.items()}
    return batch, image, query


def run_once(fn, device):
    if device == 'cuda':
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def interleaved(variants: dict, repeats: int, device: str):
    """Round 0 warms up and measures memory; rounds 1..repeats time every variant in turn.

    Interleaving makes load changes on a shared machine hit all variants alike; the ratio
    to the first variant is the median of the per-round ratios.
    """
    times = {name: [] for name in variants}
    mem, outs = {}, {}
    for rnd in range(repeats + 1):
        for name, fn in variants.items():
            if rnd == 0:
                with PeakMemory(device) as pm:
                    _, outs[name] = run_once(fn, device)
                mem[name] = pm.extra
            else:
                times[name].append(run_once(fn, device)[0])
    base = next(iter(variants))
    stats = {name: dict(time=statistics.median(ts), mem=mem[name],
                        ratio=statistics.median(t / t0 for t, t0 in zip(ts, times[base])))
             for name, ts in times.items()}
    return stats, outs


class PeakMemory:
    """Peak memory growth of one variant: CUDA allocator peak, or process peak RSS on CPU."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        if self.device == 'cuda':
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc):
        if self.device == 'cuda':
            self.extra = torch.cuda.max_memory_allocated() - self.base
        else:
            self.extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base
        return False


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    proc_dir = tempfile.mkdtemp(prefix='eap_bench_')
    build_tiny_qwen2vl(proc_dir, [' '.join(WORDS), 'answer: scene: region:'],
                       max_pixels=max(args.image_size, 224) ** 2)
    adapter = build_adapter(args, proc_dir)
    batch, image, query = make_batch(adapter, args)
    S = batch.model_inputs['input_ids'].shape[1]
    R = len(batch.query_rows[0])
    n_img = batch.image_layouts[0].positions.numel()
    L, H = adapter.num_layers, adapter.num_heads
    eap_name = register_eap_attention('sdpa')
    cfg = adapter.text_config
    cap = EAPCapture(layers='all', heads='all', rows='answer')

    def on(impl, fn):
        def call():
            cfg._attn_implementation = impl
            return fn()
        return call

    forward = {
        'plain': on('sdpa', lambda: adapter.forward(batch)),
        'capture': on(eap_name, lambda: adapter.forward(batch, cap))}
    if not args.skip_eager:
        forward['eager'] = on('eager', lambda: adapter.hf_model(
            **batch.model_inputs, output_attentions=True, use_cache=False))
    force = dict(min_new_tokens=args.new_tokens)  # random weights: no early EOS
    gen = dict(max_new_tokens=args.new_tokens, generation_kwargs=force)
    generate = {
        'gen': on('sdpa', lambda: adapter.generate([image], [query], **gen)),
        'gen_capture': on(eap_name, lambda: adapter.generate(
            [image], [query], capture=EAPCapture(rows='answer'), **gen)),
        'gen_capture_pre': on(eap_name, lambda: adapter.generate(
            [image], [query], capture=EAPCapture(rows='pre_answer'), **gen))}
    with torch.no_grad():
        res, outs = interleaved(forward, args.repeats, args.device)
        # kept: [R, L*H, n_img] rows; transient: one layer's [H, R, S] scores at a time
        res['capture']['bytes'] = outs['capture']['row_attn'][0].numel() * 4 + H * R * S * 4
        if 'eager' in outs:
            res['eager']['bytes'] = sum(a.numel() * a.element_size()
                                        for a in outs['eager'].attentions)
        del outs
        gres, gouts = interleaved(generate, args.repeats, args.device)
        assert gouts['gen_capture'][0].row_attn.shape[0] == args.new_tokens
        res.update(gres)
    cfg._attn_implementation = eap_name
    report(args, res, S, R, n_img, L, H)
    return res


def report(args, res, S, R, n_img, L, H):
    mb = 1 / 2 ** 20
    lines = [
        f'device={args.device} threads={torch.get_num_threads()} dtype={args.dtype} '
        f'layers={L} hidden={args.hidden} heads={H} kv_heads={args.kv_heads} '
        f'vocab={args.vocab} seq={S} image_tokens={n_img} answer_rows={R} '
        f'new_tokens={args.new_tokens} repeats={args.repeats} (interleaved, medians)',
        f"forward  plain sdpa : {res['plain']['time']:.3f} s   peak growth "
        f"{res['plain']['mem'] * mb:.1f} MiB",
        f"forward  EAP capture: {res['capture']['time']:.3f} s   ratio "
        f"{res['capture']['ratio']:.3f}x   peak growth {res['capture']['mem'] * mb:.1f} MiB"
        f"   attention tensors {res['capture']['bytes'] * mb:.2f} MiB"]
    if 'eager' in res:
        lines += [
            f"forward  eager+attn : {res['eager']['time']:.3f} s   ratio "
            f"{res['eager']['ratio']:.3f}x   peak growth {res['eager']['mem'] * mb:.1f} MiB"
            f"   attention tensors {res['eager']['bytes'] * mb:.1f} MiB",
            f"capture attention memory / eager attention memory: "
            f"{100 * res['capture']['bytes'] / res['eager']['bytes']:.3f} %"]
    lines += [
        f"generate plain      : {res['gen']['time']:.3f} s",
        f"generate + capture  : {res['gen_capture']['time']:.3f} s   ratio "
        f"{res['gen_capture']['ratio']:.3f}x (rows='answer', worst case: no EOS within "
        f"new_tokens, so 1 extra decoding step is run)",
        f"generate + capture  : {res['gen_capture_pre']['time']:.3f} s   ratio "
        f"{res['gen_capture_pre']['ratio']:.3f}x (rows='pre_answer': no extra step)"]
    for line in lines:
        print(line)  # noqa: T201 (a CLI report)


if __name__ == '__main__':
    main()
