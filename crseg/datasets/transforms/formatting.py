"""PackReasonSegInputs: mmseg's PackSegInputs plus the query metainfo."""
from mmseg.datasets.transforms import PackSegInputs

from crseg.registry import TRANSFORMS

REASONSEG_META_KEYS = (
    'img_path', 'seg_map_path', 'ann_path', 'ori_shape', 'img_shape', 'pad_shape',
    'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label', 'sample_idx',
    'query', 'is_sentence', 'glcot', 'answer', 'query_type', 'text_index')


@TRANSFORMS.register_module()
class PackReasonSegInputs(PackSegInputs):
    """Pack ``inputs`` (uint8 [3, H, W] in the loader's BGR order, as mmseg)
    and a ``SegDataSample`` with ``gt_sem_seg`` (long [1, H, W], 0/1/255).

    Besides mmseg's usual meta keys the metainfo carries ``query``,
    ``is_sentence``, ``glcot`` (dict or None), ``answer`` (the training target's
    answer, str or None), ``query_type`` (str or None),
    ``text_index``, ``ann_path`` and ``sample_idx`` (keys missing from the
    results are left out, as in mmseg).
    """

    def __init__(self, meta_keys=REASONSEG_META_KEYS):
        super().__init__(meta_keys=tuple(meta_keys))
