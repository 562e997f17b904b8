"""GLCoT sidecar files: GLCoT training targets kept beside a dataset, never inside it.

Real ReasonSeg and RefCOCO carry no ``{global, local, answer}`` annotation. A sidecar is a JSONL
file with one whole JSON object per line::

    {"id": "<image file name>:<sha1 of the query, 16 hex>", "image": "<image file name>",
     "query": "<query text>", "glcot": {"global": "...", "local": "...", "answer": "..."}}

Rules:

* ``id`` (:func:`sidecar_id`) depends only on the image's *file name* (not its folder, so a
  moved dataset keeps its ids; ReasonSeg and COCO file names are unique) and the query text with
  surrounding whitespace stripped.
* Lines are appended whole by writers (the annotator), so a reader may meet a half-written
  last line only when a writer was killed mid-write: :func:`read_sidecar` ignores a final line
  that does not end with a newline and says so; any other bad line is an error naming the file
  and line number.
* A later line with an id already seen replaces the earlier one (a re-annotated item wins).
* Extra keys (``source``, ``teacher``, ...) are kept and ignored by the datasets.
"""
import hashlib
import json
import os.path as osp
from typing import Dict

from mmengine.logging import print_log

GLCOT_KEYS = ('global', 'local', 'answer')


def sidecar_id(image: str, query: str) -> str:
    """Stable id of one (image, query) pair: ``<file name>:<sha1(query.strip())[:16]>``."""
    digest = hashlib.sha1(query.strip().encode('utf-8')).hexdigest()[:16]
    return f'{osp.basename(image)}:{digest}'


def check_glcot(glcot, where: str) -> dict:
    """Return ``glcot`` as a dict of the three string parts, or raise naming ``where``."""
    if not isinstance(glcot, dict):
        raise ValueError(f'{where}: "glcot" must be an object with {GLCOT_KEYS}, '
                         f'got {type(glcot).__name__}')
    out = {}
    for key in GLCOT_KEYS:
        val = glcot.get(key, '')
        if not isinstance(val, str):
            raise ValueError(f'{where}: glcot[{key!r}] must be a string, got {type(val).__name__}')
        out[key] = val
    return out


def read_sidecar(path: str) -> Dict[str, dict]:
    """Read a sidecar into ``{id: record}``; each record's ``glcot`` is checked."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'GLCoT sidecar {path!r} does not exist')
    records: Dict[str, dict] = {}
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')
    last = len(lines) - 1  # the text after the final newline ('' for a complete file)
    for num, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f'{path}:{num}'
        try:
            rec = json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if num - 1 == last:
                print_log(f'{where}: ignoring an unterminated last line (a writer was killed '
                          f'mid-line?): {e}', logger='current', level=30)
                continue
            raise ValueError(f'{where}: not a JSON object: {e}') from e
        if not isinstance(rec, dict) or not isinstance(rec.get('id'), str):
            raise ValueError(f'{where}: each line must be an object with a string "id"')
        rec['glcot'] = check_glcot(rec.get('glcot'), where)
        records[rec['id']] = rec
    return records


__all__ = ['sidecar_id', 'read_sidecar', 'check_glcot', 'GLCOT_KEYS']
