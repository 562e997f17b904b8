"""CanonicalSceneOrder: list a SynthReason scene in reading order, not drawing order.

SynthReason's generator writes the GLCoT scene line in the order it drew the objects::

    "4 objects: yellow square bottom; green star bottom; yellow triangle center; ..."

Drawing order is invisible in the picture (only occlusion hints at it), so a model asked to
produce that line must guess which object comes next: a target it cannot learn, whose loss
is spent on noise. This transform rewrites the line into an order the picture does fix:

1. by the item's 3x3 region word, rows first (top, middle, bottom), then columns (left,
   middle, right): "top left" < "top" < "top right" < "left" < "center" < ... < "bottom right";
2. within one region, by colour, then by shape (alphabetically);
3. items equal in all three keep their drawing order (the sort is stable; they read the same).

The count, the items and their texts are unchanged: only the order moves, so an order-free
measure (scene-item F1 in ``glcot_consistency.py``) scores the line the same before and after.
The generator and its files stay as they are; this is a training-pipeline choice, measured as a
lever of the tiny default (``configs/crseg/crseg_tinyllava_tinysam_sortedscene_*``; README,
"Levers measured": it raises the scene line's item F1 but not the answers, so the default
leaves it out).

A scene line that is not in this format raises a ``ValueError`` naming the annotation file and
the text, rather than training on a line left half-sorted.
"""
import re

from mmcv.transforms import BaseTransform

from crseg.datasets.synthreason import REGION_COLS, REGION_CENTRE, REGION_ROWS
from crseg.registry import TRANSFORMS

_SCENE = re.compile(r'^(\d+) objects: (.+)\.$')
# the generator's region words and their row / column; a region without a row word is in
# the middle row (1), without a column word in the middle column (1)
_ROWS = {w: i for i, w in enumerate(REGION_ROWS) if w}
_COLS = {w: i for i, w in enumerate(REGION_COLS) if w}


def _item_key(item: str, where: str):
    words = item.split(' ')
    if len(words) < 3:
        raise ValueError(f'{where}: scene item {item!r} is not "colour shape region"')
    colour, shape, region = words[0], words[1], words[2:]
    unknown = [w for w in region if w not in _ROWS and w not in _COLS and w != REGION_CENTRE]
    if unknown:
        raise ValueError(f'{where}: scene item {item!r} has an unknown region word {unknown[0]!r}')
    row = next((_ROWS[w] for w in region if w in _ROWS), 1)
    col = next((_COLS[w] for w in region if w in _COLS), 1)
    return row, col, colour, shape


def canonical_scene(text: str, where: str = '?') -> str:
    """Return SynthReason's scene line ``text`` with its items in reading order (see module)."""
    m = _SCENE.match(text)
    if m is None:
        raise ValueError(f'{where}: GLCoT global text {text!r} is not a SynthReason scene line '
                         '("N objects: colour shape region; ...")')
    items = m.group(2).split('; ')
    if len(items) != int(m.group(1)):
        raise ValueError(f'{where}: scene line {text!r} counts {m.group(1)} objects but lists '
                         f'{len(items)}')
    items = sorted(items, key=lambda it: _item_key(it, where))
    return f'{m.group(1)} objects: ' + '; '.join(items) + '.'


@TRANSFORMS.register_module()
class CanonicalSceneOrder(BaseTransform):
    """Rewrite ``results['glcot']['global']`` with :func:`canonical_scene`.

    Samples without GLCoT (``glcot`` None) pass unchanged. The ``glcot`` dict is replaced,
    never mutated (the dataset's copy stays as read).
    """

    def transform(self, results: dict) -> dict:
        glcot = results.get('glcot')
        if not isinstance(glcot, dict) or not isinstance(glcot.get('global'), str):
            return results
        where = results.get('ann_path') or results.get('img_path') or '?'
        results['glcot'] = dict(glcot, **{'global': canonical_scene(glcot['global'], where)})
        return results
