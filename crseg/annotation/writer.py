"""Crash-safe, resumable JSONL files (the sidecar and the list of items left out).

Every batch of records is appended as whole lines in one ``write``, then flushed and fsynced, so
a killed writer leaves at most one unterminated last line. Opening a file repairs that
(:func:`repair_tail`, logged): a last line that is a whole record (an object with a string
``id``) and only lacks its newline (a file edited by hand) is kept and the newline added; a
truly half-written one is cut away and its bytes appended to ``<file>.cut`` (one line per cut),
never lost. The ids already present are then known (:attr:`JsonlWriter.records`), so a
restarted run skips them and writes no duplicate.
"""
import json
import os
import os.path as osp
from typing import Dict, Iterable, List

from mmengine.logging import print_log


def cut_path(path: str) -> str:
    """Where :func:`repair_tail` keeps the half-written last lines it cuts from ``path``."""
    return f'{path}.cut'


def _is_record(data: bytes) -> bool:
    try:
        rec = json.loads(data)
    except ValueError:  # not JSON (a half line), or not UTF-8 (cut inside a character)
        return False
    return isinstance(rec, dict) and isinstance(rec.get('id'), str)


def repair_tail(path: str) -> int:
    """Repair an unterminated last line: a whole record gets its newline (kept), anything
    else is cut away and saved to :func:`cut_path`; returns the number of bytes cut."""
    if not osp.isfile(path):
        return 0
    with open(path, 'rb+') as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        block, pos = 1 << 16, size
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b'\n')
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        if keep == size:
            return 0
        f.seek(keep)
        tail = f.read(size - keep)
        if _is_record(tail):
            f.seek(size)
            f.write(b'\n')
            f.flush()
            os.fsync(f.fileno())
            print_log(f'{path}: the last line is a whole record without its final newline; '
                      'kept it and added the newline', logger='current', level=30)
            return 0
        saved = ''
        if tail.strip():
            with open(cut_path(path), 'ab') as aside:
                aside.write(tail + b'\n')
                aside.flush()
                os.fsync(aside.fileno())
            saved = f'; its bytes are saved in {cut_path(path)}'
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        print_log(f'{path}: cut an unterminated last line ({size - keep} bytes, not a whole '
                  f'record: a writer was killed mid-line){saved}', logger='current', level=30)
        return size - keep


def read_jsonl(path: str) -> List[dict]:
    """Records of a JSONL file (whole lines only; a bad line is an error naming it)."""
    if not osp.isfile(path):
        return []
    out = []
    with open(path, encoding='utf-8') as f:
        for num, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not line.endswith('\n'):
                break  # an unterminated last line: not written yet
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{num}: not a JSON object: {e}') from e
            if not isinstance(rec, dict) or not isinstance(rec.get('id'), str):
                raise ValueError(f'{path}:{num}: each line must be an object with a string "id"')
            out.append(rec)
    return out


def dump_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False) + '\n'


class JsonlWriter:
    """Append-only JSONL file keyed by ``id``; ``records`` = the last record of every id."""

    def __init__(self, path: str):
        self.path = path
        folder = osp.dirname(osp.abspath(path))
        os.makedirs(folder, exist_ok=True)
        repair_tail(path)
        self.records: Dict[str, dict] = {r['id']: r for r in read_jsonl(path)}

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.records

    def append(self, records: Iterable[dict]) -> None:
        records = list(records)
        if not records:
            return
        data = ''.join(dump_line(r) for r in records).encode('utf-8')
        with open(self.path, 'ab') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for r in records:
            self.records[r['id']] = r


def write_atomic(path: str, records: Iterable[dict]) -> None:
    """Replace ``path`` with ``records`` (temp file + fsync + rename: never half-written)."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(''.join(dump_line(r) for r in records).encode('utf-8'))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__all__ = ['JsonlWriter', 'repair_tail', 'read_jsonl', 'write_atomic', 'dump_line', 'cut_path']
