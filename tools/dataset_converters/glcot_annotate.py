"""Write GLCoT training targets (scene -> region -> answer) for a real dataset into a sidecar.

    # a crseg MLLM adapter as the teacher (batched greedy generation; torchrun shards it)
    python tools/dataset_converters/glcot_annotate.py data/reason_seg/ReasonSeg/train \
        --pretrained checkpoints/Qwen2.5-VL-7B-Instruct --family qwen2_vl --batch-size 8 \
        --out data/reason_seg/glcot_train.jsonl
    torchrun --nproc_per_node 8 tools/dataset_converters/glcot_annotate.py CONFIG_OR_DIR ...

    # an OpenAI-compatible endpoint (e.g. `vllm serve Qwen/Qwen2.5-VL-72B-Instruct`)
    python tools/dataset_converters/glcot_annotate.py configs/_base_/datasets/refcoco.py \
        --split train --api-base http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-VL-72B-Instruct \
        --concurrency 16 --out data/refer_seg/glcot_refcoco_train.jsonl

DATASET_CONFIG_OR_DIR: a ReasonSeg-format folder (``<name>.json`` + image) or a config whose
``<split>_dataloader.dataset`` is built through the crseg registry. The dataset files are never
written. Beside ``OUT.jsonl``: ``OUT.rejects.jsonl`` (what was left out and why) and
``OUT.report.json``. Re-running the same command resumes. Exit status 1, with a message
saying why, when nothing was annotated: no items found, or every item this run handled was
rejected / failed / had bad input (a resumed run with nothing left to ask exits 0: "nothing to
do"). See the README section "GLCoT annotations for real data".
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from crseg.annotation import (Annotator, OpenAITeacher, QualityGate,  # noqa: E402
                              build_adapter_teacher, collect_items, default_explanatory,
                              load_explanations)
from crseg.annotation.annotator import FAILED_STATUS  # noqa: E402
from crseg.annotation.quality import CONSISTENCY_RULES, DEFAULT_EMPTY_ANSWERS  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('source', metavar='DATASET_CONFIG_OR_DIR')
    p.add_argument('--out', required=True, help='sidecar JSONL to write (appended, resumable)')
    p.add_argument('--split', default='train', help='with a config: which <split>_dataloader')
    p.add_argument('--limit', type=int, default=None, help='only the first N items')
    t = p.add_argument_group('adapter teacher')
    t.add_argument('--teacher-config', help='a config whose model.mllm is a crseg adapter')
    t.add_argument('--pretrained', help='a local HF model folder (with --family)')
    t.add_argument('--family', choices=['llava', 'qwen2_vl'])
    t.add_argument('--checkpoint', help='crseg checkpoint whose mllm.* weights are loaded')
    t.add_argument('--batch-size', type=int, default=8)
    t.add_argument('--device', default=None, help='default: cuda:<local rank> if any, else cpu')
    t.add_argument('--dtype', default=None, choices=['float32', 'bfloat16', 'float16'])
    t.add_argument('--max-new-tokens', type=int, default=160)
    o = p.add_argument_group('OpenAI-compatible teacher')
    o.add_argument('--api-base', help='e.g. http://127.0.0.1:8000/v1')
    o.add_argument('--model', help='served model name')
    o.add_argument('--api-key-env', default='OPENAI_API_KEY',
                   help='environment variable with the API key (optional)')
    o.add_argument('--concurrency', type=int, default=8)
    o.add_argument('--timeout', type=float, default=120.0, help='seconds per request')
    o.add_argument('--request-retries', type=int, default=3)
    o.add_argument('--backoff', type=float, default=1.0, help='first retry wait, doubled after')
    g = p.add_argument_group('prompt and quality gate')
    g.add_argument('--draw-mask', action='store_true', help='draw the target outline in red')
    g.add_argument('--explanatory', default=None, help="LISA's explanatory/train.json "
                   '(default: <folder>/../explanatory/<split>.json when present)')
    g.add_argument('--retries', type=int, default=1, help='re-asks of a rejected item')
    g.add_argument('--max-answer-words', type=int, default=6)
    g.add_argument('--consistency', choices=CONSISTENCY_RULES, default='head')
    g.add_argument('--empty-answers', nargs='+', default=list(DEFAULT_EMPTY_ANSWERS))
    g.add_argument('--redo-rejected', action='store_true',
                   help='ask again items rejected or with bad input in an earlier run')
    g.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)
    adapter = args.teacher_config or args.pretrained
    if bool(adapter) == bool(args.api_base):
        p.error('choose one teacher: --teacher-config / --pretrained --family, or --api-base')
    if args.pretrained and not args.family:
        p.error('--pretrained needs --family llava|qwen2_vl')
    if args.api_base and not args.model:
        p.error('--api-base needs --model')
    return args


def _dist():
    """(rank, world, barrier, gather) under torchrun, else single-process values."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world == 1:
        return 0, 1, None, None
    import torch
    import torch.distributed as dist
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend == 'nccl':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', '0')))
    dist.init_process_group(backend)

    def gather(obj):
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    return dist.get_rank(), dist.get_world_size(), dist.barrier, gather


def _log_every_rank(rank: int) -> None:
    """mmengine shows only ERROR on ranks > 0; a rank's warnings name its bad items."""
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance(f'glcot_annotate_rank{rank}',
                                   logger_name=f'glcot_annotate[rank{rank}]')
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.INFO)


def main(argv=None) -> dict:
    args = parse_args(argv)
    rank, world, barrier, gather = _dist()
    if world > 1:
        _log_every_rank(rank)
    items = collect_items(args.source, args.split)
    if args.limit is not None:
        items = items[:args.limit]
    if not items:
        limit = f' with --limit {args.limit}' if args.limit is not None else ''
        split = '' if osp.isdir(args.source) else f' (split {args.split!r})'
        raise SystemExit(f'glcot_annotate: no items to annotate in {args.source}{split}'
                         f'{limit}: nothing asked, nothing written')
    if args.api_base:
        teacher = OpenAITeacher(args.api_base, args.model, args.api_key_env, args.concurrency,
                                args.timeout, args.request_retries, args.backoff,
                                max_tokens=args.max_new_tokens)
    else:
        device = args.device
        if device is None and world > 1:
            import torch
            if torch.cuda.is_available():
                device = f'cuda:{os.environ.get("LOCAL_RANK", "0")}'
        teacher = build_adapter_teacher(args.teacher_config, args.pretrained, args.family,
                                        args.checkpoint, device, args.dtype, args.batch_size,
                                        args.max_new_tokens)
    explanatory = args.explanatory or default_explanatory(args.source)
    gate = QualityGate(args.max_answer_words, tuple(args.empty_answers), args.consistency)
    annotator = Annotator(teacher, gate, args.out, retries=args.retries,
                          draw_mask=args.draw_mask, explanations=load_explanations(explanatory),
                          redo_rejected=args.redo_rejected, rank=rank, world_size=world,
                          progress=not args.no_progress)
    try:
        report = annotator.run(items, barrier, gather)
        if report.get('status') in FAILED_STATUS:
            raise SystemExit(f'glcot_annotate: {report["message"]}')
        return report
    finally:
        if hasattr(teacher, 'close'):
            teacher.close()
        if world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()


if __name__ == '__main__':
    main()
