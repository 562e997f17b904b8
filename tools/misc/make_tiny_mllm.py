"""Build a random-weight tiny MLLM + offline processor folder (no download needed).

    python tools/misc/make_tiny_mllm.py --family llava --corpus data/reasonseg/train \
        --out work_dirs/tiny_llava
    python tools/misc/make_tiny_mllm.py --family qwen2vl --corpus texts.txt \
        --out work_dirs/tiny_qwen2vl
    python tools/misc/make_tiny_mllm.py --family internvl --corpus texts.txt \
        --out work_dirs/tiny_internvl   # InternVL3-like, tiles up to 4 crops + thumbnail
    python tools/misc/make_tiny_mllm.py --family qwen3vl --corpus texts.txt \
        --out work_dirs/tiny_qwen3vl
    python tools/misc/make_tiny_mllm.py --family llava_onevision --corpus texts.txt \
        --out work_dirs/tiny_llava_onevision

``--corpus``: a folder of ReasonSeg-format JSONs (every ``text`` entry and every string of the
``glcot`` entries is used, searched recursively) or a .txt file (one text per line). The folder
loads back with ``from_pretrained`` offline; use it as ``pretrained=`` of the adapters.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from crseg.testing.corpus import load_corpus  # noqa (shared with tools/misc/demo_steps.py)
from crseg.testing.tiny_llava_onevision import build_tiny_llava_onevision  # noqa
from crseg.testing.tiny_mllm import build_tiny_llava, build_tiny_qwen2vl  # noqa
from crseg.testing.tiny_internvl import build_tiny_internvl  # noqa
from crseg.testing.tiny_qwen3vl import build_tiny_qwen3vl  # noqa

# family -> builder of the families with their own module (one block each)
BUILDERS = {}
BUILDERS['qwen3vl'] = build_tiny_qwen3vl  # Qwen3-VL (dense), patch 16, DeepStack
BUILDERS['internvl'] = build_tiny_internvl  # InternVL3-like, tiles up to 4 crops + thumbnail


def _tiny_llava_onevision(out, texts, heads, **common):
    """Anyres tiles of 32 px, up to 2x2; grouped-query attention when ``heads`` is even."""
    kv = heads // 2 if heads % 2 == 0 else heads
    return build_tiny_llava_onevision(out, texts, heads=heads, kv_heads=kv, **common)


BUILDERS['llava_onevision'] = _tiny_llava_onevision


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--family', choices=['llava', 'qwen2vl', 'qwen2_5vl', *BUILDERS],
                   required=True)
    p.add_argument('--corpus', required=True, help='ReasonSeg JSON folder or a .txt file')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--extra-corpus', nargs='+', default=[],
                   help='more corpus folders/.txt files (e.g. prompt instructions, box/point '
                   'answer texts of the baselines) so the BPE merges cover them')
    p.add_argument('--vocab-size', type=int, default=1024)
    p.add_argument('--text-width', type=int, default=128)
    p.add_argument('--text-layers', type=int, default=3)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    texts = load_corpus(args.corpus)
    for extra in args.extra_corpus:
        texts += load_corpus(extra)
    common = dict(vocab_size=args.vocab_size, text_width=args.text_width,
                  text_layers=args.text_layers, heads=args.heads, seed=args.seed)
    if args.family == 'llava':
        return build_tiny_llava(args.out, texts, **common)
    if args.family in BUILDERS:
        return BUILDERS[args.family](args.out, texts, **common)
    return build_tiny_qwen2vl(args.out, texts, qwen25=args.family == 'qwen2_5vl', **common)


if __name__ == '__main__':
    main()
