"""The teacher's prompt: query + ground-truth hint -> a GLCoT reply naming the right object.

The teacher sees the image, the query, the target's box (in pixels and as fractions of the
image, so the hint reads the same whatever coordinate system the teacher was trained on) and,
with ``draw_mask``, the image with the target's outline drawn in red. The prompt says the hint
is given so that the answer names the right object and asks the teacher not to mention it.
LISA's explanation of the image (``explanatory/train.json``), when there is one, is a further
hint. The retry prompt repeats all that and says why the first reply was rejected.
The text is a :class:`crseg.glcot.QueryPrompt`: an adapter teacher whose context it overflows
cuts the query's tail and keeps the hints and the reply format whole.
"""
from typing import Optional, Tuple

import cv2
import numpy as np

from crseg.glcot import QueryPrompt
from .items import LoadedItem

OUTLINE_RGB = (255, 0, 0)

_FORMAT = ('Reply in exactly three lines and nothing else:\n'
           'scene: <one sentence on what the whole image shows>\n'
           'region: <the part of the image that matters for the request and its details>\n'
           'answer: <a short name of the target, at most {n} words>')


def draw_outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of an RGB image with the mask's outline drawn in red (width ~0.5% of the side)."""
    out = image.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    width = max(1, round(0.005 * max(image.shape[:2])))
    cv2.drawContours(out, contours, -1, OUTLINE_RGB, width)
    return out


def box_hint(box: Tuple[int, int, int, int], width: int, height: int) -> str:
    x0, y0, x1, y1 = box
    return (f'the box from x={x0} to x={x1} and y={y0} to y={y1} in pixels of this '
            f'{width}x{height} image (from {100 * x0 / width:.0f}% to {100 * x1 / width:.0f}% '
            f'of the width, {100 * y0 / height:.0f}% to {100 * y1 / height:.0f}% of the height)')


def build_prompt(loaded: LoadedItem, max_answer_words: int, empty_answer: str = 'none',
                 explanation: Optional[dict] = None, draw_mask: bool = False,
                 rejected_because: Optional[str] = None) -> Tuple[QueryPrompt, np.ndarray]:
    """The user text and the image for the teacher (see module docstring)."""
    item = loaded.item
    height, width = loaded.image.shape[:2]
    lead, query = 'Request about this image: "', item.query.strip()
    lines = ['"']
    if loaded.has_target:
        where = box_hint(loaded.box, width, height)
        if draw_mask:
            where += '; its outline is drawn in red'
        lines.append(f'Hint: the object this request refers to is inside {where}. The hint is '
                     'given only so that your answer names the right object. Do not mention '
                     'the hint, the box, coordinates or any drawn outline in your reply; '
                     'describe the image as if you had found the object yourself.')
    else:
        lines.append('Hint: nothing in this image matches the request. Describe the scene and '
                     'the part you checked, then give the answer '
                     f'"{empty_answer}". Do not mention that you were told.')
    if explanation:
        said = explanation.get('query', '').strip()
        about = '' if not said or said == item.query.strip() else f' (written for "{said}")'
        lines.append(f'A further hint, an explanation of the target{about}: '
                     f'{explanation["outputs"].strip()}')
    lines.append(_FORMAT.format(n=max_answer_words))
    if rejected_because:
        lines.append(f'A previous reply was rejected because {rejected_because}. Follow the '
                     'three-line format exactly, keep the answer short, and make the region '
                     'line name the same object as the answer.')
    image = draw_outline(loaded.image, loaded.mask) if draw_mask and loaded.has_target \
        else loaded.image
    return QueryPrompt.around(lead, query, '\n'.join(lines)), image


__all__ = ['build_prompt', 'draw_outline', 'box_hint']
