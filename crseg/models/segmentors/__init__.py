from .attention_only import AttentionOnlySegmentor
from .base import EMPTY_LOGIT, BaseReasonSegmentor
from .box_point_parser import (BoxPointParse, build_box_point_target, mask_box_point,
                               parse_box_point_answer)
from .box_point_prompt import BoxPointPromptSegmentor
from .crseg import CRSeg
from .seg_token import SegTokenSegmentor
from .seg_token_head import SegTokenHead

__all__ = ['BaseReasonSegmentor', 'EMPTY_LOGIT', 'CRSeg', 'SegTokenSegmentor', 'SegTokenHead',
           'BoxPointPromptSegmentor', 'AttentionOnlySegmentor',
           'BoxPointParse', 'build_box_point_target', 'mask_box_point', 'parse_box_point_answer']
