"""LoadReasonSegAnnotations: shapes of a data info -> ``gt_seg_map``."""
from mmcv.transforms import BaseTransform

from crseg.registry import TRANSFORMS
from .rasterize import rasterize_shapes


@TRANSFORMS.register_module()
class LoadReasonSegAnnotations(BaseTransform):
    """Rasterize ``results['shapes']`` into ``gt_seg_map`` (uint8 HxW).

    Target pixels 1, ignore 255, background 0; ``flag`` shapes skipped;
    largest area first (see :mod:`.rasterize`). Shapes are LISA polygons
    (``points``) or COCO ``segmentation`` (polygons / RLE, RefCOCO).
    Put it after ``LoadImageFromFile`` (it needs the image size) and before
    any geometric transform.

    An all-zero map is only produced when the annotation has no target shape
    (a no-answer sample). When target shapes exist but none of their pixels
    survive (e.g. all painted over by ``ignore``), a ValueError names the file
    rather than silently training on an empty target.

    Required keys: img_shape (or ori_shape), shapes. Added: gt_seg_map,
    seg_fields (+ 'gt_seg_map').
    """

    def transform(self, results: dict) -> dict:
        source = results.get('ann_path') or results.get('img_path') or '?'
        shape = results.get('ori_shape') or results.get('img_shape')
        if shape is None:
            raise KeyError(f'{source}: LoadReasonSegAnnotations needs the image size; '
                           'run LoadImageFromFile first')
        if 'shapes' not in results:
            raise KeyError(f'{source}: data info has no "shapes"')
        seg, num_targets = rasterize_shapes(results['shapes'], int(shape[0]), int(shape[1]), source)
        if num_targets and not (seg == 1).any():
            raise ValueError(
                f'{source}: {num_targets} target shape(s) rasterize to no target pixel '
                '(covered by ignore shapes?)')
        results['gt_seg_map'] = seg
        fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in fields:
            fields.append('gt_seg_map')
        return results
