"""Fixtures for dataset tests: tiny LISA-format folders built in tmp dirs."""
import json

import cv2
import numpy as np
import pytest
from mmengine.registry import init_default_scope


@pytest.fixture(autouse=True)
def _crseg_scope():
    init_default_scope('crseg')


def write_sample(folder, name, ann, size=(20, 30), ext='.jpg', encoding='utf-8', raw=None):
    """Write ``name.ext`` (HxW ``size``, seeded noise) and ``name.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    if ext:
        img = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f'{name}{ext}'), img)
    data = raw if raw is not None else json.dumps(ann, ensure_ascii=False).encode(encoding)
    (folder / f'{name}.json').write_bytes(data)


@pytest.fixture(name='write_sample')
def write_sample_fixture():
    """The :func:`write_sample` helper, as a fixture (no cross-conftest imports)."""
    return write_sample


@pytest.fixture
def lisa_root(tmp_path):
    """Two valid images in ``val``: one with 2 queries + glcot, one empty."""
    val = tmp_path / 'val'
    write_sample(val, 'a', dict(
        text=['the cat on the left', 'the small cat'], is_sentence=False,
        shapes=[dict(label='target', points=[[2, 2], [10, 2], [10, 10], [2, 10]])],
        glcot=[dict(zip(('global', 'local', 'answer'), ('g1', 'l1', 'cat'))),
               dict(zip(('global', 'local', 'answer'), ('g2', 'l2', 'cat')))],
        query_type=['spatial', 'attribute']))
    write_sample(val, 'b', dict(text=['What could hold water?'], is_sentence=True, shapes=[]),
                 ext='.png')
    return tmp_path
