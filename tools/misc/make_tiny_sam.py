"""Save a random-weight tiny SAM where a config expects a real one (a stand-in; no download).

    python tools/misc/make_tiny_sam.py --out data/weights/sam_vit_h_4b8939.pth
    python tools/misc/make_tiny_sam.py --family sam2 --out data/weights/sam2.1-hiera-large
    python tools/misc/make_tiny_sam.py --family sam3_tracker --out data/weights/sam3

``--family sam`` (default) writes a ``segment_anything`` state dict of the ``tiny`` preset
(:data:`crseg.models.refiners.sam_arch.SAM_ARCH_PRESETS`); ``SAMRefiner`` reads its
architecture from the file (``arch`` left to its default), so a config pointed at it needs no
other setting. ``sam2`` / ``sam3_tracker`` write a ``save_pretrained`` folder of the
transformers class with its processor, loaded by ``Sam2Refiner`` / ``Sam3TrackerRefiner``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import torch  # noqa: E402

from crseg.models.refiners.sam_arch import build_sam  # noqa: E402
from crseg.testing.tiny_sam import TINY_HF_SAM, build_tiny_hf_sam  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--family', choices=['sam', *TINY_HF_SAM], default='sam')
    p.add_argument('--out', required=True,
                   help='the .pth file (sam) or the folder (sam2 / sam3_tracker) to write')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.family != 'sam':
        build_tiny_hf_sam(args.out, args.family, args.seed)
    else:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        torch.manual_seed(args.seed)
        torch.save(build_sam('tiny').state_dict(), args.out)
    print(f'make_tiny_sam: a tiny random {args.family} stand-in -> {args.out}')


if __name__ == '__main__':
    main()
