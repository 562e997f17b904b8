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
* ``glcot`` must hold all three keys with string values (:func:`check_glcot`); ``""`` is an
  explicit empty part (an answer-only line: ``{"global": "", "local": "", "answer": "..."}``).
  An absent or misspelled key (``scene`` for ``global``) is an error naming the file, line
  and key, never an empty text.
"""
import hashlib
import json
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmengine.logging import print_log

GLCOT_KEYS = ('global', 'local', 'answer')


def sidecar_id(image: str, query: str) -> str:
    """Stable id of one (image, query) pair: ``<file name>:<sha1(query.strip())[:16]>``."""
    digest = hashlib.sha1(query.strip().encode('utf-8')).hexdigest()[:16]
    return f'{osp.basename(image)}:{digest}'


def check_glcot(glcot, where: str) -> dict:
    """Return ``glcot`` as a dict of the three string parts, or raise naming ``where``.

    All three keys must be present with string values; an empty string is an explicit "no
    text" (an answer-only record writes ``"global": "", "local": ""``). An absent key is an
    error naming it and the keys the object has (e.g. ``scene`` written for ``global``): read
    as empty, it would silently train GLCoT mode on the answer alone.
    """
    if not isinstance(glcot, dict):
        raise ValueError(f'{where}: "glcot" must be an object with {GLCOT_KEYS}, '
                         f'got {type(glcot).__name__}')
    missing = [key for key in GLCOT_KEYS if key not in glcot]
    if missing:
        raise ValueError(f'{where}: "glcot" has no {", ".join(map(repr, missing))} (its keys: '
                         f'{sorted(glcot)}); every record needs {GLCOT_KEYS} as strings, '
                         'with "" for an empty part (an answer-only record: '
                         '{"global": "", "local": "", "answer": "..."})')
    out = {}
    for key in GLCOT_KEYS:
        val = glcot[key]
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


def sidecar_record(image: str, query: str, glcot: dict, **extra) -> dict:
    """One sidecar line as a dict (``id``, ``image`` file name, ``query``, checked ``glcot``)."""
    rec = dict(id=sidecar_id(image, query), image=osp.basename(image), query=query,
               glcot=check_glcot(glcot, f'sidecar record for {image!r} / {query!r}'))
    rec.update(extra)
    return rec


ON_MISSING = ('skip', 'raise')


def attach_glcot(data_list: List[dict], glcot_file: Optional[str] = None,
                 on_missing: str = 'skip', name: str = 'dataset') -> Tuple[List[dict], int]:
    """Give each data info (``img_path``, ``query``) its training target; return ``(kept, n)``.

    Without ``glcot_file`` nothing is dropped: ``answer`` is filled from the entry's own
    ``glcot['answer']`` where the dataset gave no ``answer`` of its own (``n`` is 0).

    With ``glcot_file`` (a sidecar, see the module docstring) the record with id
    ``sidecar_id(img_path, query)`` sets ``glcot`` (the three parts) and ``answer`` (its
    answer), replacing what the dataset had. A query whose record is missing or has an empty
    answer is left out and counted (``on_missing='skip'``; ``n`` is that count, logged with the
    first few) or is an error naming it (``on_missing='raise'``). A sidecar that matches no
    query at all is an error (wrong file or split) rather than an empty dataset.
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f'{name}: on_missing_glcot must be one of {ON_MISSING}, '
                         f'got {on_missing!r}')
    if glcot_file is None:
        for info in data_list:
            own = info.get('glcot')
            if info.get('answer') is None and isinstance(own, dict):
                info['answer'] = own.get('answer')
        return data_list, 0
    records = read_sidecar(glcot_file)
    kept, missing, used = [], [], set()
    for info in data_list:
        key = sidecar_id(info['img_path'], info['query'])
        rec = records.get(key)
        if rec is None or not rec['glcot']['answer'].strip():
            why = 'no entry' if rec is None else 'empty answer'
            if on_missing == 'raise':
                raise ValueError(f'{name}: {glcot_file} has {why} for id {key} (image '
                                 f'{info["img_path"]}, query {info["query"]!r})')
            missing.append(f'{key} ({why})')
            continue
        used.add(key)
        kept.append(dict(info, glcot=dict(rec['glcot']), answer=rec['glcot']['answer']))
    if data_list and not kept:
        raise ValueError(f'{name}: no query has a usable entry in the GLCoT sidecar '
                         f'{glcot_file} ({len(records)} records): wrong file or split?')
    if missing:
        print_log(f'{name}: skipped {len(missing)} of {len(data_list)} queries with no usable '
                  f'GLCoT entry in {glcot_file}, e.g. {missing[:3]}', logger='current',
                  level=30)
    print_log(f'{name}: GLCoT targets for {len(kept)} queries from {glcot_file} '
              f'({len(records) - len(used)} of its {len(records)} records unused)',
              logger='current')
    return kept, len(missing)


__all__ = ['sidecar_id', 'read_sidecar', 'check_glcot', 'sidecar_record', 'attach_glcot',
           'GLCOT_KEYS']
