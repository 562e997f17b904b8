"""Loading transforms: images with clear errors, shapes of a data info -> ``gt_seg_map``."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine import fileio

from crseg.registry import TRANSFORMS
from ..image_io import decode_image
from .rasterize import rasterize_shapes


@TRANSFORMS.register_module(name='LoadImageFromFile')
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` decoding by crseg's one image rule.

    Registered in the crseg scope under mmcv's name, so every crseg pipeline
    uses it. The image is decoded by :func:`crseg.datasets.image_io.decode_image`,
    the reader ``tools/demo.py`` and the web demo use too: for ``color_type``
    'color' / 'grayscale' the EXIF orientation is applied for every format
    (OpenCV skips it for WebP), a 16-bit PNG holding fewer than 16 bits is
    scaled by its range, formats OpenCV cannot decode (GIF) are read by
    Pillow with a warning; an empty (0-byte) or undecodable file raises a
    ValueError naming the path. Arguments as mmcv's.
    """

    def _read(self, filename: str):
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            data = client.get(filename)
        else:
            data = fileio.get(filename, backend_args=self.backend_args)
        return decode_image(data, filename, self.color_type, self.imdecode_backend)

    def transform(self, results: dict):
        try:
            img = self._read(results['img_path'])
        except Exception:
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadReasonSegAnnotations(BaseTransform):
    """Rasterize ``results['shapes']`` into ``gt_seg_map`` (uint8 HxW).

    Target pixels 1, ignore 255, background 0, drawn with LISA's rules (see
    :mod:`.rasterize`). Shapes are LISA polygons (``points``) or COCO
    ``segmentation`` (polygons / RLE, RefCOCO). Put it after
    ``LoadImageFromFile`` (it needs the image size) and before any geometric
    transform.

    As in LISA, target shapes covered entirely by ignore shapes give a map with
    no target pixel; ``ReasonSegDataset`` counts and logs such files
    (``empty_target``) when it scans them, and refuses them under
    ``strict=True``.

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
        seg, _ = rasterize_shapes(results['shapes'], int(shape[0]), int(shape[1]), source)
        results['gt_seg_map'] = seg
        fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in fields:
            fields.append('gt_seg_map')
        return results
