"""The one image reader of every entry point: the datasets (crseg's ``LoadImageFromFile``, so
``tools/train.py`` / ``tools/test.py``), ``ReasonSegInferencer`` (``tools/demo.py``, the web
demo), ``tools/demo.py``'s picture and the web demo's upload check. One file gives one array.

The rule, for ``color_type`` 'color' (3 channels, BGR as mmcv; :func:`read_rgb` flips to RGB)
and 'grayscale' with mmcv's default ``cv2`` backend:

* decoded by OpenCV, as mmcv and LISA's ``cv2.imread`` decode (8 bits; grayscale and palette
  images expanded to 3 channels; alpha dropped, not composited; CMYK JPEGs converted by
  libjpeg); the content decides the format, never the file extension (``.JPG``, a PNG named
  ``.jpg``);
* the EXIF orientation is applied, for every format that carries it (JPEG, PNG ``eXIf`` before
  the pixel data, WebP, TIFF), as image viewers and LabelMe apply it: annotation polygons were
  drawn on the image as the viewer showed it. OpenCV alone applies it to JPEG, PNG and TIFF but
  not to WebP, so JPEG / PNG / WebP are decoded without it and it is read by Pillow
  (:func:`exif_orientation`) and applied here; TIFF decoders apply it themselves. The result
  equals ``PIL.ImageOps.exif_transpose``; :func:`oriented_size` gives the size of that array;
* a 16-bit PNG holding fewer than 16 bits is scaled by its range (:func:`decode_png16`);
* a file OpenCV cannot decode but Pillow can (GIF, ...) is read by Pillow (first frame,
  converted to RGB / L), with a warning naming the file once;
* an empty or undecodable file is a ``ValueError`` naming it.

Other ``color_type`` values ('unchanged', '*_ignore_orientation') and other decoding backends
go to ``mmcv.imfrombytes`` as they are.
"""
import io
import os.path as osp
from typing import Optional, Tuple

import cv2
import mmcv
import numpy as np
from mmengine import fileio
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
EXIF_ORIENTATION = 0x0112
#: color_type values decoded by the rule above (others go to mmcv unchanged).
RULED_COLOR_TYPES = ('color', 'grayscale')
_warned = set()


def _warn_once(path: str, message: str) -> None:
    if (path, message) not in _warned:
        _warned.add((path, message))
        print_log(f'{path}: {message}', logger='current', level=30)


def _png_bit_depth(data: bytes) -> int:
    """Bit depth from a PNG's IHDR chunk (byte 24), 0 when ``data`` is not a PNG."""
    return data[24] if data[:8] == PNG_SIGNATURE and len(data) > 24 else 0


def decode_png16(data: bytes, path: str, color_type: str):
    """Decode a 16-bit PNG whose values use fewer than 16 bits (e.g. 12-bit data).

    OpenCV's 8-bit conversion divides by 256, which turns 12-bit data nearly
    black. Here values are scaled by the smallest ``2**bits - 1`` that holds
    the image's peak (bits >= 8), with a warning naming the file once. Returns
    None when the data fill 16 bits (OpenCV's usual conversion applies).
    The EXIF orientation is not applied here (:func:`decode_image` does).
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint16:
        return None
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]  # drop alpha, as IMREAD_COLOR does
    bits = max(8, int(img.max()).bit_length())
    if bits >= 16:
        return None
    _warn_once(path, f'16-bit PNG holding {bits}-bit values (peak {int(img.max())}); '
                     f'scaled by 255/{2 ** bits - 1} to 8 bits')
    img = np.round(img.astype(np.float64) * (255.0 / (2 ** bits - 1))).astype(np.uint8)
    if color_type == 'grayscale':
        return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img


def _open(data: Optional[bytes], path: str) -> Optional[Image.Image]:
    """Pillow's lazy view (header only) of ``data``, or of the file ``path`` when ``data`` is
    None; None when Pillow cannot identify it."""
    try:
        return Image.open(io.BytesIO(data) if data is not None else path)
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as e:
        raise ValueError(f'{path}: too many pixels ({e})') from e


def _orientation_of(im: Image.Image, path: str) -> int:
    """The orientation still to apply to the decoded array (1: none)."""
    # TIFF: OpenCV's and Pillow's decoders (and Pillow's size) are upright already.
    # PNG: an eXIf after the pixel data would need a full decode: not read.
    if im.format == 'TIFF' or (im.format == 'PNG' and 'exif' not in im.info):
        return 1
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as e:  # Pillow's EXIF parser raises many types on a broken block
        _warn_once(path, f'unreadable EXIF block ({type(e).__name__}: {e}); '
                         'orientation not applied')
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(data: bytes, path: str = '<bytes>') -> int:
    """The EXIF orientation (1-8) of an encoded image; 1 when it has none or Pillow cannot
    identify the format."""
    im = _open(data, path)
    if im is None:
        return 1
    with im:
        return _orientation_of(im, path)


# EXIF orientation -> the array operation that shows the image upright (PIL's exif_transpose)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: a.swapaxes(0, 1)[::-1],
}


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (H x W [x C]) turned upright for an EXIF ``orientation`` (1: unchanged)."""
    op = _ORIENT.get(orientation)
    return img if op is None else np.ascontiguousarray(op(img))


def _decode_with_pillow(data: bytes, path: str, color_type: str) -> Optional[np.ndarray]:
    im = _open(data, path)
    if im is None:
        return None
    with im:
        try:
            im.seek(0)
            frame = im.convert('L' if color_type == 'grayscale' else 'RGB')
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f'{path}: cannot decode the image ({im.format}: {e})') from e
        _warn_once(path, f'OpenCV cannot decode this {im.format} image; read by Pillow '
                         '(first frame, converted to 8-bit colour)')
    arr = np.asarray(frame)
    return arr if color_type == 'grayscale' else np.ascontiguousarray(arr[..., ::-1])


def decode_image(data: bytes, path: str, color_type: str = 'color',
                 backend: Optional[str] = 'cv2') -> np.ndarray:
    """Decode ``data`` (the bytes of file ``path``) by the module's rule; a ValueError names
    ``path`` when the bytes are empty or no decoder reads them."""
    if not data:
        raise ValueError(f'{path}: image file is empty (0 bytes)')
    if color_type not in RULED_COLOR_TYPES or backend not in (None, 'cv2'):
        try:
            img = mmcv.imfrombytes(data, flag=color_type, backend=backend)
        except Exception as e:  # mmcv and its backends raise many types for bad bytes
            raise ValueError(f'{path}: cannot decode the image ({e})') from e
        if img is None:
            raise ValueError(f'{path}: cannot decode the image')
        return img
    img = None
    if _png_bit_depth(data) == 16:
        img = decode_png16(data, path, color_type)
    if img is None:
        try:
            img = mmcv.imfrombytes(data, flag=f'{color_type}_ignore_orientation', backend='cv2')
        except cv2.error:
            img = None
    if img is None:
        img = _decode_with_pillow(data, path, color_type)
    if img is None:
        raise ValueError(f'{path}: cannot decode the image (neither OpenCV nor Pillow reads it)')
    return apply_orientation(img, exif_orientation(data, path))


def read_image(path: str, color_type: str = 'color', backend_args: Optional[dict] = None,
               backend: Optional[str] = 'cv2') -> np.ndarray:
    """Read and decode the image file ``path`` (BGR for 'color', as mmcv)."""
    try:
        data = fileio.get(path, backend_args=backend_args)
    except OSError as e:
        raise ValueError(f'{path}: cannot read the image file ({e})') from e
    return decode_image(data, path, color_type, backend)


def read_rgb(path: str) -> np.ndarray:
    """The image file ``path`` as RGB uint8 H x W x 3: what the datasets' pipeline loads, in
    RGB order."""
    return np.ascontiguousarray(read_image(path)[..., ::-1])


def oriented_size(path: str) -> Tuple[int, int]:
    """(height, width) of :func:`read_image`'s array for the local file ``path``: from the
    header where Pillow reads it (the EXIF orientation applied as above), else by decoding.
    A ValueError names the file when it is empty or unreadable."""
    if osp.getsize(path) == 0:
        raise ValueError(f'{path}: image file is empty (0 bytes)')
    try:
        im = _open(None, path)
    except OSError as e:
        raise ValueError(f'{path}: cannot read the image ({e})') from e
    if im is None:
        try:
            return tuple(read_image(path).shape[:2])
        except ValueError as e:
            raise ValueError(f'{path}: cannot read the image ({e})') from e
    with im:
        width, height = im.size
        if _orientation_of(im, path) in (5, 6, 7, 8):  # turned by 90 degrees
            width, height = height, width
    return height, width


__all__ = ['decode_image', 'read_image', 'read_rgb', 'oriented_size', 'exif_orientation',
           'apply_orientation', 'decode_png16', 'RULED_COLOR_TYPES']
