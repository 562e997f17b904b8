"""Loading transforms: images with clear errors, shapes of a data info -> ``gt_seg_map``."""
import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from crseg.registry import TRANSFORMS
from .rasterize import rasterize_shapes

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_warned_low_bit_depth = set()


def _png_bit_depth(data: bytes) -> int:
    """Bit depth from a PNG's IHDR chunk (byte 24), 0 when ``data`` is not a PNG."""
    return data[24] if data[:8] == PNG_SIGNATURE and len(data) > 24 else 0


def decode_png16(data: bytes, path: str, color_type: str):
    """Decode a 16-bit PNG whose values use fewer than 16 bits (e.g. 12-bit data).

    OpenCV's 8-bit conversion divides by 256, which turns 12-bit data nearly
    black. Here values are scaled by the smallest ``2**bits - 1`` that holds
    the image's peak (bits >= 8), with a warning naming the file once. Returns
    None when the data fill 16 bits (OpenCV's usual conversion applies).
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint16:
        return None
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]  # drop alpha, as IMREAD_COLOR does
    bits = max(8, int(img.max()).bit_length())
    if bits >= 16:
        return None
    if path not in _warned_low_bit_depth:
        _warned_low_bit_depth.add(path)
        print_log(f'{path}: 16-bit PNG holding {bits}-bit values (peak {int(img.max())}); '
                  f'scaled by 255/{2 ** bits - 1} to 8 bits', logger='current', level=30)
    img = np.round(img.astype(np.float64) * (255.0 / (2 ** bits - 1))).astype(np.uint8)
    if color_type == 'grayscale':
        return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img


@TRANSFORMS.register_module(name='LoadImageFromFile')
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with errors that name the file.

    Registered in the crseg scope under mmcv's name, so every crseg pipeline
    uses it. Differences from mmcv's: an empty (0-byte) or undecodable file
    raises a ValueError naming the path; a 16-bit PNG holding fewer than 16
    bits (e.g. 12-bit data) is scaled by its range, not divided by 256 (see
    :func:`decode_png16`), for ``color_type`` 'color' and 'grayscale'.
    Arguments as mmcv's.
    """

    def _read(self, filename: str):
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            data = client.get(filename)
        else:
            data = fileio.get(filename, backend_args=self.backend_args)
        if not data:
            raise ValueError(f'{filename}: image file is empty (0 bytes)')
        if _png_bit_depth(data) == 16 and self.color_type in ('color', 'grayscale'):
            img = decode_png16(data, filename, self.color_type)
            if img is not None:
                return img
        try:
            img = mmcv.imfrombytes(data, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as e:
            raise ValueError(f'{filename}: cannot decode the image ({e})') from e
        if img is None:
            raise ValueError(f'{filename}: cannot decode the image')
        return img

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
