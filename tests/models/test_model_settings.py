"""Bad numbers in a model part's settings fail when the part is built, naming the part, the
key, the value and what is expected (they used to reach torch: ``Trying to create tensor with
negative dimension -1``, ``integer modulo by zero``, or a NaN loss, or nothing at all)."""
import math

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from crseg.models.eap.capture import EAPCapture
from crseg.models.eap.coarse_head import AttentionAggregator, EAPCoarseHead
from crseg.models.eap.points import PointSampler
from crseg.models.refiners.identity import IdentityRefiner
from crseg.models.refiners.sam import SAMRefiner
from crseg.models.segmentors.loss_weights import merge_loss_weights
from crseg.models.segmentors.seg_token_head import SegTokenHead
from crseg.registry import MODELS
from crseg.utils.check_settings import check_float, check_int

NAN, INF = float('nan'), float('inf')
INT_GE1 = 'an int >= 1'
WEIGHT = 'a finite number >= 0'

# (part, settings that build, key, bad value, what the error says is expected)
CASES = [
    (EAPCoarseHead, dict(in_channels=4), 'in_channels', 2.0, INT_GE1),
    (EAPCoarseHead, dict(in_channels=4), 'in_channels', '4', INT_GE1),
    (EAPCoarseHead, dict(in_channels=4), 'channels', 0, INT_GE1),
    (EAPCoarseHead, dict(in_channels=4), 'channels', -1, INT_GE1),
    (EAPCoarseHead, dict(in_channels=4), 'channels', 12, 'a multiple of 8 or a value up to 8'),
    (EAPCoarseHead, dict(in_channels=4), 'upsample', 2.0, INT_GE1),
    (EAPCoarseHead, dict(in_channels=4), 'num_convs', -1, 'an int >= 0'),
    (EAPCoarseHead, dict(in_channels=4), 'num_convs', 1.5, 'an int >= 0'),
    (EAPCoarseHead, dict(in_channels=4), 'loss_bce_weight', NAN, WEIGHT),
    (EAPCoarseHead, dict(in_channels=4), 'loss_bce_weight', -1, WEIGHT),
    (EAPCoarseHead, dict(in_channels=4), 'loss_dice_weight', INF, WEIGHT),
    (EAPCoarseHead, dict(in_channels=4), 'loss_dice_weight', '1', WEIGHT),
    (EAPCoarseHead, dict(in_channels=4), 'ignore_index', 1.5, 'an int'),
    (AttentionAggregator, dict(), 'top_k', 0, INT_GE1),
    (AttentionAggregator, dict(), 'top_k', 2.5, INT_GE1),
    (AttentionAggregator, dict(), 'offset', NAN, 'a finite number'),
    (AttentionAggregator, dict(), 'upsample', 0, INT_GE1),
    (AttentionAggregator, dict(), 'in_channels', 0, 'an int >= 1 or None'),
    (AttentionAggregator, dict(), 'head_weights', ['a'], 'a flat or [layers][heads] list'),
    (PointSampler, dict(), 'num_pos', 1.5, INT_GE1),
    (PointSampler, dict(), 'num_pos', '2', INT_GE1),
    (PointSampler, dict(), 'num_neg', 1.5, 'an int >= 0'),
    (PointSampler, dict(), 'num_neg', True, 'an int >= 0'),
    (PointSampler, dict(), 'min_distance', NAN, 'an int >= 0'),
    (PointSampler, dict(), 'neg_quantile', NAN, 'a finite number in (0, 1]'),
    (PointSampler, dict(), 'box_threshold', NAN, 'a finite number'),
    (PointSampler, dict(), 'flat_eps', -1, 'a finite number >= 0'),
    (EAPCapture, dict(), 'layers', [1.5], "'all' or a non-empty list of layer indices"),
    (EAPCapture, dict(), 'layers', 'al', "'all' or a non-empty list of layer indices"),
    (EAPCapture, dict(), 'layers', [], "'all' or a non-empty list of layer indices"),
    (EAPCapture, dict(), 'heads', ['a'], "'all' or a non-empty list of head indices"),
    (EAPCapture, dict(), 'head_weights', [NAN], 'a non-empty list of finite numbers'),
    (SegTokenHead, dict(in_channels=4, out_channels=4), 'in_channels', 4.0, INT_GE1),
    (SegTokenHead, dict(in_channels=4, out_channels=4), 'channels', 2.5, 'an int >= 1 or None'),
    (SegTokenHead, dict(in_channels=4, out_channels=4), 'loss_bce_weight', NAN, WEIGHT),
    (SegTokenHead, dict(in_channels=4, out_channels=4), 'loss_dice_weight', -1, WEIGHT),
    (IdentityRefiner, dict(), 'mask_size', 8.5, INT_GE1),
    (IdentityRefiner, dict(), 'mask_size', '256', INT_GE1),
    (SAMRefiner, dict(arch='tiny'), 'cache_size', -1, 'an int >= 0'),
    (SAMRefiner, dict(arch='tiny'), 'encoder_batch_size', 2.5, INT_GE1),
    (SAMRefiner, dict(arch='tiny'), 'mask_pad_value', NAN, 'a finite number or None'),
]


def _id(case):
    return f'{case[0].__name__}.{case[2]}={case[3]!r}'


@pytest.mark.parametrize('part, ok, key, value, expected', CASES, ids=map(_id, CASES))
def test_bad_number_is_named_at_build_time(part, ok, key, value, expected):
    part(**ok)  # the settings around the bad one are fine
    with pytest.raises((TypeError, ValueError)) as e:
        part(**{**ok, key: value})
    msg = str(e.value)
    assert msg.startswith(f'{part.__name__}'), msg
    assert f'{key}={value!r}' in msg and 'is not valid; expected' in msg, msg
    assert expected in msg, msg


def test_loss_weights_are_finite_and_not_negative():
    for value in (NAN, -0.5, '1', None):
        with pytest.raises((TypeError, ValueError), match=r"CRSeg: loss_weights\.mask="
                           f"{value!r}.* is not valid; expected {WEIGHT}"):
            merge_loss_weights('CRSeg', dict(lm=1.0, mask=1.0), dict(mask=value))
    assert merge_loss_weights('CRSeg', dict(lm=1.0, mask=1.0), dict(mask=0)) == \
        dict(lm=1.0, mask=0.0)


def test_checker_accepts_what_it_should():
    assert check_int('P', 'k', 3, 1) == 3 and check_int('P', 'k', None, optional=True) is None
    assert check_float('P', 'k', 2, 0) == 2.0 and isinstance(check_float('P', 'k', 2), float)
    assert check_float('P', 'k', 1, 0, 1, low_open=True) == 1.0
    with pytest.raises(ValueError, match=r'P: k=0\.0 is not valid; expected a finite number in '
                       r'\(0, 1\]'):
        check_float('P', 'k', 0.0, 0, 1, low_open=True)
    with pytest.raises(ValueError, match='P: k=inf'):
        check_float('P', 'k', math.inf)


@pytest.mark.parametrize('option, message', [
    ('point_sampler.num_pos', "PointSampler: num_pos=0 is not valid; expected an int >= 1"),
    ('coarse_head.channels', "EAPCoarseHead: channels=0 is not valid; expected an int >= 1"),
    ('loss_weights.coarse', 'CRSeg: loss_weights.coarse=nan is not valid; expected a finite '
     'number >= 0'),
    ('agreement_top_frac', 'CRSeg: agreement_top_frac=0.0 is not valid; expected a finite '
     'number in (0, 1]'),
    ('refiner.encoder_batch_size', 'SAMRefiner: encoder_batch_size=0 is not valid; expected '
     'an int >= 1'),
])
def test_cfg_option_with_a_bad_number_is_named(repo_root, tiny_llava_dir, tiny_sam_arch,
                                               option, message):
    """The --cfg-options route: a config edit builds a CRSeg that names the key."""
    cfg = Config.fromfile(str(repo_root / 'configs/_base_/models/crseg_tinyllava_tinysam.py'))
    cfg.merge_from_dict({'model.mllm.pretrained': tiny_llava_dir,
                         'model.refiner.arch': tiny_sam_arch})
    value = {'loss_weights.coarse': NAN, 'agreement_top_frac': 0.0}.get(option, 0)
    cfg.merge_from_dict({f'model.{option}': value})
    with DefaultScope.overwrite_default_scope('crseg'), pytest.raises(
            (TypeError, ValueError)) as e:
        MODELS.build(cfg.model)
    assert message in str(e.value)


@pytest.mark.parametrize('key, value, message', [
    ('max_new_tokens', 0, 'LlavaAdapter: max_new_tokens=0 is not valid; expected an int >= 1'),
    ('max_new_tokens', 16.5, 'LlavaAdapter: max_new_tokens=16.5 (a float) is not valid'),
    ('answer_token_weight', NAN, 'LlavaAdapter: answer_token_weight=nan is not valid; '
     'expected a finite number >= 0'),
    ('torch_dtype', 'bfloat61', "LlavaAdapter: torch_dtype='bfloat61' is not a torch dtype"),
])
def test_mllm_adapter_settings_are_named_before_loading(tiny_llava_dir, key, value, message):
    """The adapter's own numbers (and dtype name) fail before any weight loads."""
    from crseg.models.mllms import LlavaAdapter
    with pytest.raises((TypeError, ValueError)) as e:
        LlavaAdapter(pretrained=tiny_llava_dir, **{key: value})
    assert message in str(e.value)
