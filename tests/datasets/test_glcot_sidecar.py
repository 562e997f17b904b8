"""GLCoT sidecars: ids, reading, and attaching targets to ReasonSeg samples (answer packed)."""
import hashlib
import json
import logging
import re

import pytest
from mmengine.logging import MMLogger

from crseg.datasets.glcot_sidecar import attach_glcot, read_sidecar, sidecar_id, sidecar_record
from crseg.registry import DATASETS

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadReasonSegAnnotations'),
            dict(type='PackReasonSegInputs')]


def write_jsonl(path, records, tail=''):
    path.write_text(''.join(json.dumps(r) + '\n' for r in records) + tail, encoding='utf-8')
    return str(path)


def glcot(answer, scene='a room', region='the left part'):
    return {'global': scene, 'local': region, 'answer': answer}


def test_sidecar_id_is_file_name_and_query_hash():
    digest = hashlib.sha1(b'the small cat').hexdigest()[:16]
    assert sidecar_id('/any/folder/a.jpg', '  the small cat\n') == f'a.jpg:{digest}'
    assert sidecar_id('a.jpg', 'the small cat') != sidecar_id('a.jpg', 'the small dog')
    rec = sidecar_record('/x/a.jpg', 'q', glcot('cat'), source='test')
    assert rec['id'] == sidecar_id('a.jpg', 'q') and rec['image'] == 'a.jpg'
    assert rec['source'] == 'test' and rec['glcot']['answer'] == 'cat'


def test_read_sidecar_last_line_rules(tmp_path):
    recs = [sidecar_record('a.jpg', 'q1', glcot('old')),
            sidecar_record('a.jpg', 'q1', glcot('new'))]
    path = write_jsonl(tmp_path / 's.jsonl', recs, tail='{"id": "a.jpg:12')  # killed writer
    out = read_sidecar(path)
    assert list(out) == [recs[0]['id']] and out[recs[0]['id']]['glcot']['answer'] == 'new'
    bad = tmp_path / 'bad.jsonl'
    ok = json.dumps(dict(id='x', glcot=glcot('a')))
    bad.write_text(f'{ok}\nnot json\n{ok}\n')
    with pytest.raises(ValueError, match=r'bad\.jsonl:2'):
        read_sidecar(str(bad))


def _infos():
    return [dict(img_path=f'/d/{name}.jpg', query=q, glcot=None, answer=None)
            for name, q in (('a', 'q1'), ('a', 'q2'), ('b', 'q3'))]


def test_attach_skips_and_counts_missing_and_empty_answers(tmp_path):
    path = write_jsonl(tmp_path / 's.jsonl', [
        sidecar_record('a.jpg', 'q1', glcot('the cat')),
        sidecar_record('b.jpg', 'q3', glcot('')),          # empty answer: unusable
        sidecar_record('z.jpg', 'other', glcot('x'))])     # matches nothing: unused
    logger = MMLogger.get_current_instance()
    messages = []
    handler = logging.Handler()
    handler.emit = lambda r: messages.append(r.getMessage())
    logger.addHandler(handler)
    try:
        kept, missing = attach_glcot(_infos(), path, 'skip', 'toy')
    finally:
        logger.removeHandler(handler)
    assert missing == 2 and [k['query'] for k in kept] == ['q1']
    assert kept[0]['glcot'] == glcot('the cat') and kept[0]['answer'] == 'the cat'
    assert any('skipped 2 of 3' in m and 'no entry' in m and 'empty answer' in m
               for m in messages), messages
    assert any('2 of its 3 records unused' in m for m in messages), messages
    with pytest.raises(ValueError, match=r"no entry for id a\.jpg:.*'q2'"):
        attach_glcot(_infos(), path, 'raise', 'toy')
    with pytest.raises(ValueError, match='on_missing_glcot'):
        attach_glcot(_infos(), path, 'ignore', 'toy')


def test_attach_without_any_match_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / 's.jsonl', [sidecar_record('z.jpg', 'q', glcot('x'))])
    with pytest.raises(ValueError, match='wrong file or split'):
        attach_glcot(_infos(), path, 'skip', 'toy')


def test_attach_without_sidecar_fills_answer_from_own_glcot():
    infos = _infos()
    infos[0]['glcot'] = glcot('the mug')
    infos[1]['answer'] = 'own answer'
    infos[1]['glcot'] = glcot('ignored')
    kept, missing = attach_glcot(infos)
    assert missing == 0 and len(kept) == 3
    assert [k['answer'] for k in kept] == ['the mug', 'own answer', None]


def test_reasonseg_reads_sidecar_and_packs_answer(lisa_root, write_sample, tmp_path):
    # A LISA image without glcot fields next to the fixture's (which has its own glcot).
    write_sample(lisa_root / 'val', 'c', dict(
        text=['the round thing', 'what holds the flowers?'], is_sentence=True,
        shapes=[dict(label='target', points=[[1, 1], [8, 1], [8, 8]])]))
    a_img = str(lisa_root / 'val' / 'a.jpg')
    path = write_jsonl(tmp_path / 'side.jsonl', [
        sidecar_record(a_img, 'the cat on the left', glcot('the left cat', 'two cats')),
        sidecar_record('c.jpg', 'what holds the flowers?', glcot('the vase', 'a table'))])
    ds = DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='val',
                             first_text_only=False, glcot_file=path, pipeline=PIPELINE))
    # a: 2 queries (1 in the sidecar), b: 1 (none), c: 2 (1) -> 2 kept, 3 counted
    assert len(ds) == 2 and ds.num_glcot_missing == 3
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['query'] for i in infos] == ['the cat on the left', 'what holds the flowers?']
    assert infos[0]['glcot'] == glcot('the left cat', 'two cats')  # replaces the JSON's own
    assert [i['sample_idx'] for i in infos] == [0, 1]
    meta = ds[1]['data_samples'].metainfo
    assert meta['answer'] == 'the vase' and meta['glcot']['local'] == 'the left part'
    with pytest.raises(ValueError, match='no entry'):
        DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='val',
                            glcot_file=path, on_missing_glcot='raise'))


def test_reasonseg_answer_field_and_own_glcot(lisa_root, write_sample):
    write_sample(lisa_root / 'train', 'd', dict(
        text=['q1', 'q2'], shapes=[], answer=['none', 'nothing here']))
    ds = DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='train',
                             first_text_only=False, pipeline=PIPELINE))
    answers = [ds[i]['data_samples'].metainfo['answer'] for i in range(2)]
    assert answers == ['none', 'nothing here']
    val = DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='val',
                              first_text_only=False))
    assert val.get_data_info(0)['answer'] == 'cat'  # from the JSON's own glcot
    assert val.get_data_info(2)['answer'] is None   # b: neither glcot nor answer


# issue 27 item 1: absent / misspelled parts are refused, never read as empty texts
@pytest.mark.parametrize('parts,missing', [
    ({'scene': 'a room', 'region': 'the left', 'answer': 'cat'}, "'global', 'local'"),
    ({'answer': 'cat'}, "'global', 'local'"),
    ({'global': 'a room', 'local': 'the left'}, "'answer'")])
def test_sidecar_record_without_a_part_names_file_line_and_key(tmp_path, parts, missing):
    answer_only = sidecar_record('a.jpg', 'q0', glcot('cat', scene='', region=''))
    bad = dict(id=sidecar_id('a.jpg', 'q1'), image='a.jpg', query='q1', glcot=parts)
    path = write_jsonl(tmp_path / 's.jsonl', [answer_only, bad])
    with pytest.raises(ValueError, match=rf's\.jsonl:2: "glcot" has no {missing} \(its keys: '
                                         rf'{re.escape(str(sorted(parts)))}\)'):
        read_sidecar(path)
    with pytest.raises(ValueError, match=r's\.jsonl:2: "glcot" has no'):
        attach_glcot(_infos(), path, 'skip', 'toy')


def test_sidecar_part_of_wrong_type_and_answer_only_lines(tmp_path):
    bad = dict(id=sidecar_id('a.jpg', 'q1'), glcot=dict(glcot('cat'), local=['x']))
    with pytest.raises(ValueError, match=r"s\.jsonl:1: glcot\['local'\] must be a string"):
        read_sidecar(write_jsonl(tmp_path / 's.jsonl', [bad]))
    # the explicit answer-only form (empty global / local) stays valid and is used
    path = write_jsonl(tmp_path / 'ok.jsonl', [
        sidecar_record('a.jpg', 'q1', glcot('the cat', scene='', region=''))])
    kept, missing = attach_glcot(_infos(), path, 'skip', 'toy')
    assert missing == 2 and kept[0]['glcot'] == glcot('the cat', scene='', region='')


def test_reasonseg_own_glcot_without_a_part_is_an_error(lisa_root, write_sample):
    write_sample(lisa_root / 'val', 'c', dict(
        text=['q1', 'q2'], shapes=[], glcot=[None, {'scene': 'x', 'region': 'y', 'answer': 'z'}]))
    with pytest.raises(ValueError, match=r"c\.json: glcot\[1\]: \"glcot\" has no 'global', "
                                         r"'local'"):
        DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='val'))
    write_sample(lisa_root / 'val', 'c', dict(
        text=['q1', 'q2'], shapes=[], glcot=[None, glcot('z', scene='', region='')]))
    ds = DATASETS.build(dict(type='ReasonSegDataset', data_root=str(lisa_root), split='val',
                             first_text_only=False))
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['glcot'] for i in infos if 'c.json' in i['ann_path']] == [
        None, glcot('z', scene='', region='')]
