"""The benchmark table of ``tools/benchmark.py``: rows, outcome counts, memory, Markdown and JSON.

One row per (method, dataset). Metrics come from two :class:`ReasonSegMetric` evaluators run in
the same test loop, with prefixes ``lisa`` and ``segzero`` (:data:`PROTOCOL_EVALUATORS`), so
both protocols score the very same predictions. Outcome counts come from the metric too
(:func:`outcome_counts`): each segmentor writes ``outcomes = {key: 0 or 1}`` into every
predicted sample (``parse_failure`` plus its own keys: ``parse_fallback``, ``seg_missing`` ...)
and the metric sums them into ``<prefix>/n_<key>`` over all samples of all processes. The
"parse fail" column is ``n_parse_failure`` over N (source ``'metric'``); a model that writes
no outcomes gets n/a (source ``'none'``). Every count goes into the JSON row (``outcomes``);
the Markdown notes list the non-zero ones besides ``parse_failure``.

Memory (:func:`peak_memory_mib`): ``torch.cuda.max_memory_allocated`` on GPU, the process's
peak RSS (``ru_maxrss``) on CPU; the kind is stored with the number.
"""
import json
import math
import os
import os.path as osp
import resource
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from crseg.models.segmentors.base import PARSE_FAILURE  # written into every prediction

PROTOCOLS = ('lisa', 'segzero')
PROTOCOL_EVALUATORS = [dict(type='ReasonSegMetric', protocol=p, prefix=p) for p in PROTOCOLS]
METRIC_KEYS = ('gIoU', 'cIoU', 'gIoU_short', 'cIoU_short', 'gIoU_long', 'cIoU_long')
#: Data-sample fields every method reads at test time (the metric reads ``gt_sem_seg``).
REQUIRED_TEST_FIELDS = ('query', )


def outcome_counts(metrics: Dict[str, float]) -> Dict[str, int]:
    """``{key: count}`` from the metric's ``<prefix>/n_<key>`` results (the first protocol
    that has any; both evaluators count the same predictions)."""
    for p in PROTOCOLS:
        head = f'{p}/n_'
        counts = {k[len(head):]: int(v) for k, v in metrics.items() if k.startswith(head)}
        if counts:
            return counts
    return {}


def peak_memory_mib(device: Optional[str] = None) -> Tuple[float, str]:
    """(peak MiB, kind): CUDA allocator peak on GPU, else this process's peak RSS (Linux KiB)."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if str(device).startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20, 'cuda_max_allocated'
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 'cpu_peak_rss'


def missing_test_fields(sample, required: Sequence[str] = REQUIRED_TEST_FIELDS) -> List[str]:
    """Fields a packed data sample (``{'inputs', 'data_samples'}``) lacks for the benchmark."""
    ds = sample['data_samples'] if isinstance(sample, dict) else sample
    meta = ds.metainfo
    missing = [k for k in required if meta.get(k) in (None, '')]
    if 'gt_sem_seg' not in ds:
        missing.append('gt_sem_seg')
    return missing


def make_row(method: str, dataset: str, metrics: Dict[str, float], *, config: str = '',
             checkpoint: Optional[str] = None, seconds: Optional[float] = None,
             peak_mib: Optional[float] = None, memory_kind: str = '',
             notes: Sequence[str] = ()) -> dict:
    """A flat row from the runner's metrics (keys ``lisa/gIoU``, ``segzero/cIoU``,
    ``lisa/n_parse_failure`` ...)."""
    n = metrics.get('lisa/num_samples', metrics.get('segzero/num_samples', 0))
    row = dict(method=method, dataset=dataset, config=config, checkpoint=checkpoint,
               num_samples=int(n))
    notes = list(notes)
    for p in PROTOCOLS:
        for k in METRIC_KEYS:
            row[f'{p}_{k}'] = metrics.get(f'{p}/{k}')
    if row['lisa_gIoU_short'] is None and row['lisa_gIoU_long'] is None and n:
        notes.append('no is_sentence: short/long n/a')
    outcomes = outcome_counts(metrics)
    parse_failures = outcomes.get(PARSE_FAILURE)
    row['parse_failures'] = parse_failures
    row['parse_failure_rate'] = (None if parse_failures is None or not n
                                 else parse_failures / n)
    row['parse_failure_source'] = 'metric' if parse_failures is not None else 'none'
    row['outcomes'] = outcomes
    row['sec_per_sample'] = seconds / n if seconds is not None and n else None
    row['peak_memory_mib'] = peak_mib
    row['memory_kind'] = memory_kind
    if checkpoint is None:
        notes.append('no checkpoint: weights as built by the config')
    row['notes'] = notes
    return row


def error_row(method: str, dataset: str, config: str, checkpoint: Optional[str],
              error: str) -> dict:
    """A row for a run that failed; every number is None and ``error`` says why."""
    row = make_row(method, dataset, {}, config=config, checkpoint=checkpoint)
    row['error'] = error
    return row


def _fmt(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return 'n/a'
    return f'{v:.{digits}f}'


def _pair(row: dict, p: str, split: str) -> str:
    g, c = row.get(f'{p}_gIoU_{split}'), row.get(f'{p}_cIoU_{split}')
    return 'n/a' if g is None and c is None else f'{_fmt(g)} / {_fmt(c)}'


def to_markdown(rows: List[dict]) -> str:
    """The Markdown table (LISA and Seg-Zero protocols side by side)."""
    head = ['method', 'dataset', 'N', 'gIoU', 'cIoU', 'short g/c', 'long g/c', 'SZ gIoU',
            'SZ cIoU', 'SZ short g/c', 'SZ long g/c', 'parse fail', 's/sample', 'peak MiB',
            'notes']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        rate = r.get('parse_failure_rate')
        fail = 'n/a' if rate is None else f"{100 * rate:.1f}% ({r['parse_failures']})"
        notes = list(r.get('notes', []))
        counted = [f'{k} {v}' for k, v in sorted((r.get('outcomes') or {}).items())
                   if k != PARSE_FAILURE and v]
        if counted:
            notes.append('outcomes: ' + ', '.join(counted))
        if r.get('error'):
            notes.insert(0, f"ERROR: {r['error']}")
        mem = _fmt(r.get('peak_memory_mib'), 0)
        if r.get('memory_kind'):
            mem += f" ({'GPU' if r['memory_kind'].startswith('cuda') else 'RSS'})"
        cells = [r['method'], r['dataset'], str(r.get('num_samples', 0)),
                 _fmt(r.get('lisa_gIoU')), _fmt(r.get('lisa_cIoU')), _pair(r, 'lisa', 'short'),
                 _pair(r, 'lisa', 'long'), _fmt(r.get('segzero_gIoU')),
                 _fmt(r.get('segzero_cIoU')), _pair(r, 'segzero', 'short'),
                 _pair(r, 'segzero', 'long'), fail, _fmt(r.get('sec_per_sample'), 3), mem,
                 '; '.join(notes).replace('|', '/')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    legend = ('\ngIoU / cIoU in percent. LISA protocol: ignore pixels count in neither I nor U, '
              'an empty union scores 1. SZ = Seg-Zero protocol: ignore counts as target, an '
              'empty union scores 0. g/c = gIoU / cIoU. parse fail: samples whose answer the '
              'method could not parse (n_parse_failure of the metric, e.g. a GLCoT answer that '
              'fell back, an unusable box/point answer, a missing [SEG]) over N. notes '
              '"outcomes": the other non-zero per-sample outcome counts (n_<key> of the metric, '
              'summed over all processes; the JSON rows hold every count). s/sample: '
              'test-step time (model + metric, no data loading). peak MiB: CUDA allocator '
              'peak (GPU) or process peak RSS (CPU).\n')
    return '\n'.join(lines) + '\n' + legend


def write_table(rows: List[dict], out_dir: str, name: str = 'benchmark') -> Tuple[str, str]:
    """Write ``<name>.md`` and ``<name>.json`` into ``out_dir``; return both paths."""
    os.makedirs(out_dir, exist_ok=True)
    md, js = osp.join(out_dir, f'{name}.md'), osp.join(out_dir, f'{name}.json')
    with open(md, 'w', encoding='utf-8') as f:
        f.write(to_markdown(rows))
    with open(js, 'w', encoding='utf-8') as f:
        json.dump(rows, f, indent=2)
    return md, js


__all__ = ['PROTOCOLS', 'PROTOCOL_EVALUATORS', 'METRIC_KEYS', 'REQUIRED_TEST_FIELDS',
           'outcome_counts', 'peak_memory_mib', 'missing_test_fields', 'make_row',
           'error_row', 'to_markdown', 'write_table']
