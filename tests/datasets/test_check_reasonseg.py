"""tools/analysis_tools/check_reasonseg.py: one table of LISA-rule deviations per split."""
import importlib.util
import json

import pytest

SQUARE = [[1, 1], [5, 1], [5, 5], [1, 5]]


@pytest.fixture(scope='module')
def check(repo_root):
    path = repo_root / 'tools' / 'analysis_tools' / 'check_reasonseg.py'
    spec = importlib.util.spec_from_file_location('check_reasonseg', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_counts_files_per_deviation(tmp_path, write_sample, check, capsys):
    val = tmp_path / 'val'
    q = dict(text=['q'], is_sentence=False)
    write_sample(val, 'a_clean', dict(q, shapes=[dict(label='target', points=SQUARE)]))
    write_sample(val, 'b_oob',
                 dict(q, shapes=[dict(label='Target', points=[[-3, 1], [5, 1], [5, 5]])]))
    write_sample(val, 'c_line', dict(q, shapes=[dict(label='target', points=[[1, 1], [5, 5]])]))
    write_sample(val, 'd_tie', dict(q, shapes=[dict(label='ignore', points=SQUARE),
                                               dict(label='target', points=SQUARE)]))
    write_sample(val, 'e_size', dict(q, shapes=[], imageWidth=300, imageHeight=200))
    write_sample(val, 'f_cp', None, raw=json.dumps(dict(text=['caf\u00e9'], shapes=[]),
                                                   ensure_ascii=False).encode('cp1252'))
    write_sample(val, 'g_bad', dict(q, shapes={}))
    write_sample(tmp_path / 'train', 'x', dict(q, shapes=[]))
    write_sample(tmp_path / 'empty_split', 'y', dict(q, shapes=[]), ext=None)
    results = check.main([str(tmp_path)])
    assert results['val'] == dict(files=7, invalid=1, out_of_bounds=1, odd_label=1,
                                  degenerate_polygon=1, empty_target=1, equal_area_tie=1,
                                  size_mismatch=1, non_utf8=1, missing_is_sentence=1)
    assert results['train'] == dict(files=1, invalid=0)
    assert 'no valid sample' in results['empty_split']['error']
    out = capsys.readouterr().out
    assert 'out_of_bounds' in out and 'empty_split: ReasonSegDataset: no valid sample' in out
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in out.splitlines()
            if line.startswith('|')]
    assert rows[0][:3] == ['split', 'files', 'invalid']
    assert next(r for r in rows if r[0] == 'val') == [
        'val', '7', '1', '1', '1', '1', '1', '1', '0', '1', '1', '1']
