"""Resumable JSONL writing: whole lines, a killed writer's half line cut on reopen."""
import json

import pytest

from crseg.annotation.writer import JsonlWriter, read_jsonl, repair_tail, write_atomic
from crseg.datasets.glcot_sidecar import read_sidecar, sidecar_id


def rec(i):
    return dict(id=sidecar_id(f'{i}.jpg', f'q{i}'), image=f'{i}.jpg', query=f'q{i}',
                glcot={'global': 'g', 'local': 'l', 'answer': f'a{i}'})


def test_append_reopen_and_sidecar_reader(tmp_path):
    path = tmp_path / 'sub' / 'out.jsonl'
    w = JsonlWriter(str(path))
    w.append([rec(0), rec(1)])
    w.append([])
    assert path.read_text().count('\n') == 2
    again = JsonlWriter(str(path))
    assert set(again.records) == {rec(0)['id'], rec(1)['id']} and rec(0)['id'] in again
    assert read_sidecar(str(path)) == {r['id']: r for r in (rec(0), rec(1))}


def test_half_written_line_is_cut_on_reopen(tmp_path):
    path = tmp_path / 'out.jsonl'
    JsonlWriter(str(path)).append([rec(0)])
    whole = path.read_bytes()
    path.write_bytes(whole + json.dumps(rec(1)).encode()[:25])  # killed mid-write
    assert read_jsonl(str(path)) == [rec(0)]  # a reader never sees the half line
    w = JsonlWriter(str(path))
    assert path.read_bytes() == whole and set(w.records) == {rec(0)['id']}
    # the cut bytes are saved aside, not lost
    assert (tmp_path / 'out.jsonl.cut').read_bytes() == json.dumps(rec(1)).encode()[:25] + b'\n'
    w.append([rec(1)])
    assert read_jsonl(str(path)) == [rec(0), rec(1)]


def test_whole_last_record_without_newline_is_kept(tmp_path):
    path = tmp_path / 'out.jsonl'
    JsonlWriter(str(path)).append([rec(0), rec(1)])
    whole = path.read_bytes()
    path.write_bytes(whole[:-1])  # a hand-edited file: the final newline is gone
    assert repair_tail(str(path)) == 0
    assert path.read_bytes() == whole and not (tmp_path / 'out.jsonl.cut').exists()
    path.write_bytes(whole[:-1])
    assert set(JsonlWriter(str(path)).records) == {rec(0)['id'], rec(1)['id']}
    assert path.read_bytes() == whole
    # JSON, but not a record (no string id): cut and saved aside like a half line
    path.write_bytes(whole + b'{"no_id": 1}')
    assert repair_tail(str(path)) == 12 and path.read_bytes() == whole
    assert (tmp_path / 'out.jsonl.cut').read_bytes() == b'{"no_id": 1}\n'


def test_repair_tail_edge_cases(tmp_path):
    path = tmp_path / 'f.jsonl'
    assert repair_tail(str(path)) == 0  # missing file
    path.write_bytes(b'{"id": "a"')  # only a half line
    assert repair_tail(str(path)) == 10 and path.read_bytes() == b''
    path.write_bytes(b'x' * 70000 + b'\n' + b'y' * 70000)  # newline before a long tail
    assert repair_tail(str(path)) == 70000 and path.stat().st_size == 70001
    assert (tmp_path / 'f.jsonl.cut').read_bytes() == b'{"id": "a"\n' + b'y' * 70000 + b'\n'
    path.write_bytes(b'{"id": "a"}\n  ')  # only blanks after the last newline: nothing to save
    assert repair_tail(str(path)) == 2 and path.read_bytes() == b'{"id": "a"}\n'
    assert (tmp_path / 'f.jsonl.cut').stat().st_size == 70012
    path.write_bytes('{"id": "a"}\n{"id": "\u00e9'.encode()[:-1])  # cut inside a character
    assert repair_tail(str(path)) == 9 and path.read_bytes() == b'{"id": "a"}\n'


def test_bad_line_is_an_error_naming_it(tmp_path):
    path = tmp_path / 'f.jsonl'
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r'f.jsonl:2'):
        read_jsonl(str(path))
    path.write_text('{"no_id": 1}\n')
    with pytest.raises(ValueError, match='string "id"'):
        read_jsonl(str(path))


def test_write_atomic_replaces(tmp_path):
    path = tmp_path / 'f.jsonl'
    path.write_text('old\n')
    write_atomic(str(path), [rec(2)])
    assert read_jsonl(str(path)) == [rec(2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f.jsonl']
