"""The annotation loop: items -> teacher -> quality gate -> sidecar + the list of what was left out.

Files beside ``out`` (``X.jsonl``): ``X.rejects.jsonl`` (every item left out: ``kind`` =
``rejected`` by the gate, ``bad_input``, or ``failed`` request) and ``X.report.json``.

* Work goes in chunks of the teacher's parallelism (batch size / concurrency); each chunk's
  records are appended in dataset order as whole, fsynced lines, so a killed run loses at most
  the chunk in flight.
* Restart: ids already in the sidecar are skipped, and so are ids rejected or with bad input
  (``redo_rejected`` asks them again); failed requests are asked again.
* Under torchrun each rank annotates a contiguous slice into ``X.rank<r>.jsonl`` (+ rejects);
  after a barrier rank 0 merges everything into ``X.jsonl`` in dataset order (temp file +
  rename) and removes the rank files. A kill during the merge leaves the rank files, and the
  next run merges them.
* At the end the sidecar and rejects are rewritten once in dataset order (records of ids not
  among the current items are kept after them), and the report is written. Its ``status``
  (:func:`run_status`) says whether the run did anything: ``annotated``, ``nothing_to_do``
  (a resumed run with every item already annotated or deliberately left out), or a failure
  the tool exits non-zero for, with ``message`` saying why: ``nothing_annotated`` (every item
  this run handled was rejected, failed or had bad input, or all items were left out before)
  or ``no_items``.
"""
import glob
import json
import os
import os.path as osp
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from mmengine.logging import print_log

from .items import AnnotationItem, load_item
from .prompt import build_prompt
from .quality import QualityGate
from .writer import JsonlWriter, read_jsonl, repair_tail, write_atomic


def side_paths(out: str) -> Dict[str, str]:
    stem = out[:-len('.jsonl')] if out.endswith('.jsonl') else out
    return dict(out=out, rejects=f'{stem}.rejects.jsonl', report=f'{stem}.report.json')


def rank_path(path: str, rank: int) -> str:
    stem, ext = osp.splitext(path)
    return f'{stem}.rank{rank}{ext}'


@dataclass
class RunStats:
    asked: int = 0
    accepted: int = 0
    accepted_on_retry: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed: int = 0
    bad_input: int = 0
    requests: int = 0
    consistency_checked: int = 0
    consistent: int = 0
    teacher_seconds: float = 0.0

    def merge(self, other: 'RunStats') -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)


@dataclass
class Annotator:
    """See module docstring. ``teacher`` has ``ask(requests) -> replies``, ``parallelism``,
    ``name``; ``explanations`` maps image file names to LISA explanation entries."""
    teacher: object
    gate: QualityGate
    out: str
    retries: int = 1
    draw_mask: bool = False
    explanations: Dict[str, dict] = field(default_factory=dict)
    redo_rejected: bool = False
    rank: int = 0
    world_size: int = 1
    progress: bool = True

    def __post_init__(self):
        self.paths = side_paths(self.out)
        self.stats = RunStats()

    # ------------------------------------------------------------------ main loop
    def run(self, items: List[AnnotationItem], barrier=None, gather=None) -> dict:
        """Annotate this rank's slice of ``items``; rank 0 returns the report (others {})."""
        start = time.time()
        n, r, w = len(items), self.rank, self.world_size
        mine = items[r * n // w:(r + 1) * n // w]
        if w == 1:
            done_file, rej_file = self.paths['out'], self.paths['rejects']
        else:
            done_file = rank_path(self.paths['out'], r)
            rej_file = rank_path(self.paths['rejects'], r)
        skip = self._ids_done([p for p in _family(self.paths['out']) if p != done_file],
                              [p for p in _family(self.paths['rejects']) if p != rej_file])
        self.done = JsonlWriter(done_file)
        self.rejects = JsonlWriter(rej_file)
        skip |= set(self.done.records)
        skip |= {i for i, rec in self.rejects.records.items()
                 if rec.get('kind') != 'failed' and not self.redo_rejected}
        todo = [it for it in mine if it.id not in skip]
        print_log(f'glcot_annotate[rank {r}/{w}]: {len(mine)} items in this slice, '
                  f'{len(mine) - len(todo)} already done or left out, {len(todo)} to ask '
                  f'{self.teacher.name}', logger='current')
        bar = None
        if self.progress and r == 0 and todo:
            from mmengine.utils import ProgressBar
            bar = ProgressBar(len(todo))
        chunk = max(1, int(getattr(self.teacher, 'parallelism', 1)))
        for s in range(0, len(todo), chunk):
            self._chunk(todo[s:s + chunk])
            if bar is not None:
                bar.update(len(todo[s:s + chunk]))
        if bar is not None:
            bar.file.write('\n')  # end the progress bar's line
        stats = [self.stats] if gather is None else gather(self.stats)
        if barrier is not None:
            barrier()  # every rank's files are complete
        report = {}
        if r == 0:
            total = RunStats()
            for st in stats:
                total.merge(st)
            report = self._finalize(items, total, time.time() - start)
        if barrier is not None:
            barrier()  # nobody leaves before the merged files exist
        return report

    def _ids_done(self, outs: List[str], rejects: List[str]) -> set:
        """Ids done by other files: the merged ones, or rank files of an earlier run."""
        ids = set(_latest(outs))
        if not self.redo_rejected:
            ids |= {i for i, rec in _latest(rejects).items() if rec.get('kind') != 'failed'}
        return ids

    def _leave_out(self, item: AnnotationItem, kind: str, reason: str, detail: str,
                   response: Optional[str] = None, attempt: int = 0) -> dict:
        print_log(f'glcot_annotate: left out {item.id} ({item.image!r}, query '
                  f'{item.query[:60]!r}): {kind}/{reason}: {detail}', logger='current', level=30)
        rec = dict(id=item.id, image=osp.basename(item.image), query=item.query, kind=kind,
                   reason=reason, detail=detail, teacher=self.teacher.name)
        if response is not None:
            rec.update(response=response, attempt=attempt)
        return rec

    def _chunk(self, chunk: List[AnnotationItem]) -> None:
        st = self.stats
        results: Dict[str, dict] = {}
        left: Dict[str, dict] = {}
        loaded = []
        for item in chunk:
            if item.error is None:
                try:
                    loaded.append(load_item(item))
                    continue
                except ValueError as e:
                    item.error, item.error_kind = str(e), 'image_unreadable'
            st.bad_input += 1
            left[item.id] = self._leave_out(item, 'bad_input', item.error_kind or 'bad_input',
                                            item.error)
        pending, reasons = loaded, {}
        for attempt in range(self.retries + 1):
            if not pending:
                break
            requests = [build_prompt(li, self.gate.max_answer_words, self._empty_word,
                                     self.explanations.get(osp.basename(li.item.image)),
                                     self.draw_mask, reasons.get(li.item.id))
                        for li in pending]
            t0 = time.time()
            replies = self.teacher.ask(requests)
            st.teacher_seconds += time.time() - t0
            st.requests += len(requests)
            if attempt == 0:
                st.asked += len(pending)
            retry = []
            for li, reply in zip(pending, replies):
                item = li.item
                if reply.text is None:
                    st.failed += 1
                    left[item.id] = self._leave_out(item, 'failed', 'request_failed', reply.error)
                    continue
                verdict = self.gate.check(reply.text, li.has_target)
                if verdict.consistent is not None:
                    st.consistency_checked += 1
                    st.consistent += int(verdict.consistent)
                if verdict.ok:
                    st.accepted += 1
                    st.accepted_on_retry += int(attempt > 0)
                    results[item.id] = dict(id=item.id, image=osp.basename(item.image),
                                            query=item.query, glcot=verdict.glcot,
                                            teacher=self.teacher.name, attempt=attempt)
                    left.pop(item.id, None)
                    continue
                reasons[item.id] = f'{verdict.reason}: {verdict.detail}'.rstrip(': ')
                if attempt < self.retries:
                    retry.append(li)
                else:
                    st.rejected[verdict.reason] += 1
                    left[item.id] = self._leave_out(item, 'rejected', verdict.reason,
                                                    verdict.detail, reply.text, attempt)
            pending = retry
        self.done.append(results[it.id] for it in chunk if it.id in results)
        self.rejects.append(left[it.id] for it in chunk if it.id in left)

    @property
    def _empty_word(self) -> str:
        return next(iter(self.gate.empty_answers), 'none')

    # ------------------------------------------------------------------ the end
    def _finalize(self, items: List[AnnotationItem], stats: RunStats, seconds: float) -> dict:
        out, rej = self.paths['out'], self.paths['rejects']
        sources_out, sources_rej = _family(out), _family(rej)
        accepted = _latest(sources_out, repair=True)
        left = {k: v for k, v in _latest(sources_rej, repair=True).items() if k not in accepted}
        order = [it.id for it in items]
        write_atomic(out, _ordered(accepted, order))
        write_atomic(rej, _ordered(left, order))
        for path in sources_out[1:] + sources_rej[1:]:
            os.remove(path)  # rank files, merged above
        ids = set(order)
        report = dict(
            out=out, rejects=rej, teacher=self.teacher.name, items=len(items),
            annotated=sum(1 for i in accepted if i in ids),
            left_out=dict(Counter(f'{v["kind"]}/{v["reason"]}' for i, v in left.items()
                                  if i in ids)),
            this_run=dict(asked=stats.asked, accepted=stats.accepted,
                          accepted_on_retry=stats.accepted_on_retry,
                          rejected_by_reason=dict(stats.rejected),
                          failed_requests=stats.failed, bad_input=stats.bad_input,
                          requests=stats.requests, seconds=round(seconds, 3),
                          teacher_seconds=round(stats.teacher_seconds, 3),
                          items_per_s=round(stats.asked / seconds, 4) if seconds else None,
                          processes=self.world_size),
            consistency=dict(rule=self.gate.consistency, checked=stats.consistency_checked,
                             consistent=stats.consistent,
                             rate=(round(stats.consistent / stats.consistency_checked, 4)
                                   if stats.consistency_checked else None)),
            left_out_items=[{k: v[k] for k in ('id', 'image', 'query', 'kind', 'reason',
                                               'detail')}
                            for v in _ordered(left, order)])
        report['status'], report['message'] = run_status(report, self.paths)
        with open(self.paths['report'], 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        run = report['this_run']
        print_log(f'glcot_annotate: done. {report["annotated"]}/{len(items)} items annotated in '
                  f'{out}; this run: asked {run["asked"]}, accepted {run["accepted"]} '
                  f'({run["accepted_on_retry"]} on retry), rejected '
                  f'{run["rejected_by_reason"] or 0}, failed requests {run["failed_requests"]}, '
                  f'bad input {run["bad_input"]}; {run["items_per_s"]} items/s over '
                  f'{run["seconds"]} s ({self.world_size} process(es)); answer-region '
                  f'consistency {stats.consistent}/{stats.consistency_checked}; report '
                  f'{self.paths["report"]}', logger='current')
        if report['status'] != 'annotated':
            level = 20 if report['status'] == 'nothing_to_do' else 40
            print_log(f'glcot_annotate: {report["message"]}', logger='current', level=level)
        return report


FAILED_STATUS = ('nothing_annotated', 'no_items')


def run_status(report: dict, paths: Dict[str, str]) -> Tuple[str, str]:
    """(status, message) of a finished run from its report (see module docstring)."""
    run, items, annotated = report['this_run'], report['items'], report['annotated']
    handled = run['asked'] + run['bad_input']
    if not items:
        return 'no_items', 'no items to annotate: the dataset has no (image, query) pair'
    if run['accepted']:
        return 'annotated', f'{run["accepted"]} item(s) annotated'
    where = f'every item left out and why: {paths["rejects"]} (report {paths["report"]})'
    if handled:
        gate = ', '.join(f'{k} {v}' for k, v in sorted(run['rejected_by_reason'].items()))
        return 'nothing_annotated', (
            f'nothing annotated: {handled} item(s) handled this run, none accepted (rejected '
            f'by the quality gate: {gate or 0}; failed requests: {run["failed_requests"]}; bad '
            f'input: {run["bad_input"]}); {where}. Failed requests are asked again by the next '
            'run; --redo-rejected asks the others again')
    if not annotated:
        return 'nothing_annotated', (
            f'nothing annotated: all {items} items were left out by an earlier run '
            f'({report["left_out"]}); {where}. --redo-rejected asks them again')
    return 'nothing_to_do', (
        f'nothing to do: all {items} items are already annotated ({annotated}) or were left '
        f'out by an earlier run ({items - annotated}; --redo-rejected asks them again)')


def _family(path: str) -> List[str]:
    """``path`` and its rank files (``X.rank<r>.jsonl``, from this or an earlier run)."""
    stem, ext = osp.splitext(path)
    ranks = [p for p in glob.glob(f'{glob.escape(stem)}.rank*{ext}')
             if p[len(stem) + 5:-len(ext)].isdigit()]
    return [path] + sorted(ranks, key=lambda p: int(p[len(stem) + 5:-len(ext)]))


def _latest(paths: List[str], repair: bool = False) -> Dict[str, dict]:
    """The last record of every id over ``paths``; ``repair`` (only when no process writes
    them) cuts half-written tails left by a killed rank, else they are just not read."""
    records: Dict[str, dict] = {}
    for path in paths:
        if osp.isfile(path):
            if repair:
                repair_tail(path)
            for rec in read_jsonl(path):
                records[rec['id']] = rec
    return records


def _ordered(records: Dict[str, dict], order: List[str]) -> List[dict]:
    pos = {i: k for k, i in enumerate(order)}
    known = sorted((r for i, r in records.items() if i in pos), key=lambda r: pos[r['id']])
    return known + [r for i, r in records.items() if i not in pos]


__all__ = ['Annotator', 'RunStats', 'side_paths', 'rank_path', 'run_status', 'FAILED_STATUS']
