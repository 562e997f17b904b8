"""The Python steps of ``tools/demo.sh`` and ``tools/analysis_tools/zeroshot_heads_table.sh``.

    python tools/misc/demo_steps.py prepare --data data/synthreason \\
        --mllm data/tiny_models/llava_synthreason [--num-train 2000] [--num-val 200]
    python tools/misc/demo_steps.py query data/synthreason/val     # "IMAGE<TAB>QUERY"
    python tools/misc/demo_steps.py metrics work_dirs/demo/test.log [--reference README.md]
    python tools/misc/demo_steps.py check --data DIR --num-train N --num-val N \
        [--align-iters N] [--main-iters N] [--threads N] [--seed N]

``prepare`` makes what is missing, each step only once (re-runs reuse them):

1. SynthReason into ``--data`` (``tools/dataset_converters/synthreason.py``; ``DATA/.complete``
   marks a finished folder, an unfinished one is made again);
2. the demo's tiny LLaVA into ``--mllm`` (CLIP 128 wide x 2 layers on 160 px, patch 16 ->
   10x10 image tokens; Llama 128 x 3 layers; a BPE tokenizer trained on every query and GLCoT
   text of the training split plus the prompt instructions the model will read).

``query`` prints the first image of a split folder and its first query; ``metrics`` prints the
last test metrics of a ``tools/test.py`` log as a markdown table and, with ``--reference``, one
line comparing them with the figure the README records for the default run (the
``<!-- demo-reference: gIoU=.. cIoU=.. -->`` marker in its ``make demo`` section). ``check``
validates the ``DEMO_*`` overrides before anything runs: counts and iterations must be whole
numbers >= 1, and the data folder's parent must exist. Every step exits non-zero with a message
naming what failed.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONVERTER = osp.join(ROOT, 'tools', 'dataset_converters', 'synthreason.py')
# The demo's tiny LLaVA (build_tiny_llava's other sizes are its defaults).
DEMO_LLAVA = dict(image_size=160, patch=16, vocab_size=1024, seed=0)
# The instructions are repeated so that the BPE merges cover them well.
INSTRUCTION_REPEATS = 50
METRIC_PREFIXES = ('gIoU', 'cIoU', 'num_samples')


def prepare_data(data: str, num_train: int, num_val: int, seed: int = 0,
                 workers: int = 2) -> bool:
    """SynthReason into ``data`` unless complete; True when it was generated."""
    if osp.isfile(osp.join(data, '.complete')):
        return False
    print(f'generating SynthReason into {data}', flush=True)
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([sys.executable, CONVERTER, '--out', data, '--num-train', str(num_train),
                    '--num-val', str(num_val), '--seed', str(seed), '--workers', str(workers)],
                   check=True)
    open(osp.join(data, '.complete'), 'w').close()
    return True


def prepare_mllm(data: str, mllm: str) -> bool:
    """The demo's tiny LLaVA into ``mllm`` unless it exists; True when it was built."""
    if osp.isfile(osp.join(mllm, 'model.safetensors')):
        return False
    from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
    from crseg.testing import build_tiny_llava
    from crseg.testing.corpus import load_corpus
    print(f'building the tiny LLaVA folder {mllm}', flush=True)
    texts = load_corpus(osp.join(data, 'train'))
    texts += [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION] * INSTRUCTION_REPEATS
    build_tiny_llava(mllm, texts, **DEMO_LLAVA)
    return True


def first_query(split_dir: str):
    """(image path, its first query) of the first image of a split folder."""
    images = sorted(glob.glob(osp.join(split_dir, '*.jpg')))
    if not images:
        raise FileNotFoundError(f'no .jpg image in {split_dir}')
    with open(osp.splitext(images[0])[0] + '.json', encoding='utf-8') as f:  # as written
        ann = json.load(f)
    return images[0], ann['text'][0]


def metrics_table(log_path: str) -> str:
    """The last ``Iter(test)`` line's gIoU / cIoU / num_samples as a markdown table."""
    with open(log_path, encoding='utf-8') as f:
        found = re.findall(r'Iter\(test\).*', f.read())
    if not found:
        raise ValueError(f'no test metrics found in {log_path}')
    rows = [(k, v) for k, v in re.findall(r'(\w+): ([0-9.]+)', found[-1])
            if k.startswith(METRIC_PREFIXES)]
    return '\n'.join(['| metric | value |', '|---|---|'] + [f'| {k} | {v} |' for k, v in rows])


REFERENCE_RE = re.compile(r'<!-- demo-reference: gIoU=([0-9.]+) cIoU=([0-9.]+) -->')


def reference_line(log_path: str, readme: str) -> str:
    """One line: this run's gIoU / cIoU against the README's recorded default run."""
    with open(readme, encoding='utf-8') as f:
        m = REFERENCE_RE.search(f.read())
    if m is None:
        raise ValueError(f'{readme} has no "<!-- demo-reference: gIoU=.. cIoU=.. -->" marker')
    ref = dict(gIoU=float(m.group(1)), cIoU=float(m.group(2)))
    with open(log_path, encoding='utf-8') as f:
        last = re.findall(r'Iter\(test\).*', f.read())[-1]
    got = {k: float(v) for k, v in re.findall(r'\b(gIoU|cIoU): ([0-9.]+)', last)}
    if set(got) != {'gIoU', 'cIoU'}:
        raise ValueError(f'no gIoU / cIoU in the last test line of {log_path}')
    diff = {k: got[k] - ref[k] for k in ref}
    return (f"README's recorded run: gIoU {ref['gIoU']:.1f} / cIoU {ref['cIoU']:.1f}; this run: "
            f"gIoU {got['gIoU']:.1f} / cIoU {got['cIoU']:.1f} "
            f"({diff['gIoU']:+.1f} / {diff['cIoU']:+.1f})")


def check_overrides(data: str, counts: dict, seed=None) -> None:
    """Raise a ValueError naming the DEMO_* variable whose value makes no sense: the counts
    must be whole numbers >= 1, the seed a whole number >= 0."""
    least = {name: 1 for name in counts}
    least['DEMO_SEED'] = 0
    for name, value in dict(counts, DEMO_SEED=seed).items():
        if value in (None, ''):
            continue
        if not re.fullmatch(r'[0-9]+', str(value).strip()) or int(value) < least[name]:
            raise ValueError(f'{name}={value!r}: expected a whole number >= {least[name]}')
    parent = osp.dirname(osp.abspath(data))
    if not osp.isdir(parent):
        raise ValueError(f'DEMO_DATA={data!r}: its folder {parent} does not exist (the demo '
                         'generates SynthReason into DEMO_DATA; create the parent folder first)')
    if osp.exists(data) and not osp.isdir(data):
        raise ValueError(f'DEMO_DATA={data!r} is a file, not a folder')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='step', required=True)
    prep = sub.add_parser('prepare', help='SynthReason + the tiny LLaVA, when missing')
    prep.add_argument('--data', required=True)
    prep.add_argument('--mllm', required=True)
    prep.add_argument('--num-train', type=int, default=2000)
    prep.add_argument('--num-val', type=int, default=200)
    prep.add_argument('--workers', type=int, default=2)
    q = sub.add_parser('query', help='first image of a split and its first query')
    q.add_argument('split_dir')
    m = sub.add_parser('metrics', help='the test metrics of a tools/test.py log')
    m.add_argument('log')
    m.add_argument('--reference', default=None,
                   help="README with the recorded run's <!-- demo-reference --> marker")
    c = sub.add_parser('check', help='validate the DEMO_* overrides before anything runs')
    c.add_argument('--data', required=True)
    c.add_argument('--seed', default=None)
    for opt in ('--num-train', '--num-val', '--align-iters', '--main-iters', '--threads'):
        c.add_argument(opt, default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.step == 'prepare':
            prepare_data(args.data, args.num_train, args.num_val, workers=args.workers)
            os.makedirs(osp.dirname(osp.abspath(args.mllm)), exist_ok=True)
            prepare_mllm(args.data, args.mllm)
        elif args.step == 'query':
            print('\t'.join(first_query(args.split_dir)))
        elif args.step == 'check':
            check_overrides(args.data, {'DEMO_NUM_TRAIN': args.num_train,
                                        'DEMO_NUM_VAL': args.num_val,
                                        'DEMO_ALIGN_ITERS': args.align_iters,
                                        'DEMO_MAIN_ITERS': args.main_iters,
                                        'DEMO_THREADS': args.threads}, seed=args.seed)
        else:
            print(metrics_table(args.log))
            if args.reference:
                print(reference_line(args.log, args.reference))
    except (OSError, ValueError, KeyError, IndexError, subprocess.CalledProcessError) as e:
        print(f'demo_steps.py {args.step}: {type(e).__name__}: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
