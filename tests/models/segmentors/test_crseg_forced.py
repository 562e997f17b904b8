"""CRSeg(forced_parts=...): the response starts with the sample's GLCoT target parts."""
import copy

import pytest

from crseg.glcot import GLCoT
from crseg.registry import MODELS


def _build(cfg, **overrides):
    cfg = copy.deepcopy(cfg).to_dict()
    cfg.update(overrides)
    return MODELS.build(cfg).eval()


@pytest.mark.parametrize('parts', [('global',), ('global', 'local')])
def test_forced_parts_start_each_response(model_cfg, batch, parts):
    model = _build(model_cfg, forced_parts=parts)
    data = model.data_preprocessor(copy.deepcopy(batch), False)
    out = model.predict(data['inputs'], data['data_samples'])
    glcot = GLCoT()
    for s in out:
        ann = s.metainfo['glcot']
        text = s.metainfo['pred_text']
        head = f"scene: {' '.join(ann['global'].split())}\n"
        if parts == ('global', 'local'):
            head += f"region: {' '.join(ann['local'].split())}\n"
        assert text.startswith(head) and glcot.target_prefix(ann, parts) == head
        assert len(text) > len(head)  # the rest was generated
        assert s.pred_sem_seg.data.shape[-2:] == s.gt_sem_seg.data.shape[-2:]


def test_forced_parts_refused(model_cfg, batch):
    with pytest.raises(ValueError, match=r"forced_parts=\('local',\)"):
        _build(model_cfg, forced_parts=('local',))
    with pytest.raises(ValueError, match="forced_parts='global': GLCoT: parts='global' is a "
                                         'string'):
        _build(model_cfg, forced_parts='global')
    with pytest.raises(ValueError, match="needs GLCoT\\(mode='glcot'\\)"):
        _build(model_cfg, forced_parts=('global',), glcot=dict(type='GLCoT', mode='plain'))
    model = _build(model_cfg, forced_parts=('global',))
    data = model.data_preprocessor(copy.deepcopy(batch), False)
    data['data_samples'][1].set_metainfo(dict(glcot=None))
    path = data['data_samples'][1].metainfo['img_path']
    with pytest.raises(ValueError, match=f"sample {path}: GLCoT.target_prefix"):
        model.predict(data['inputs'], data['data_samples'])
