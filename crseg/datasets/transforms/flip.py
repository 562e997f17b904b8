"""ReasoningRandomFlip: a flip that keeps spatial words true.

A horizontal flip turns "the cup left of the plate" into a picture where the
cup is right of the plate; this transform swaps the direction words in the
query and in the GLCoT texts whenever it flips the image.
"""
import re

from mmseg.datasets.transforms import RandomFlip

from crseg.registry import TRANSFORMS

_PAIRS = {
    'horizontal': (('leftmost', 'rightmost'), ('leftward', 'rightward'), ('left', 'right')),
    'vertical': (('topmost', 'bottommost'), ('top', 'bottom'), ('above', 'below'),
                 ('upper', 'lower'), ('uppermost', 'lowermost')),
}
_PAIRS['diagonal'] = _PAIRS['horizontal'] + _PAIRS['vertical']


def _case_like(word: str, template: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[0].isupper():
        return word[0].upper() + word[1:]
    return word


def swap_direction_words(text: str, direction: str = 'horizontal') -> str:
    """Swap left/right (horizontal), top/bottom, above/below, upper/lower
    (vertical) or both (diagonal) as whole words, keeping capitalization.

    Known limit: other senses of the words ("the right answer", "left over")
    are swapped too; reasoning queries rarely use them.
    """
    if direction not in _PAIRS:
        raise ValueError(f'unknown flip direction {direction!r}; expected one of {sorted(_PAIRS)}')
    mapping = {}
    for a, b in _PAIRS[direction]:
        mapping[a], mapping[b] = b, a
    pattern = r'\b(' + '|'.join(sorted(mapping, key=len, reverse=True)) + r')\b'
    return re.sub(pattern, lambda m: _case_like(mapping[m.group(0).lower()], m.group(0)),
                  text, flags=re.IGNORECASE)


@TRANSFORMS.register_module()
class ReasoningRandomFlip(RandomFlip):
    """mmseg's ``RandomFlip`` that also swaps direction words in ``query``
    and in every text of ``glcot`` (and ``answer``) when the image is flipped.

    Same arguments as ``RandomFlip`` (``prob``, ``direction``). Adds nothing
    when no flip happens. The ``glcot`` dict is replaced, never mutated.
    """

    def transform(self, results: dict) -> dict:
        results = super().transform(results)
        if not results.get('flip'):
            return results
        direction = results['flip_direction']
        if isinstance(results.get('query'), str):
            results['query'] = swap_direction_words(results['query'], direction)
        if isinstance(results.get('answer'), str):
            results['answer'] = swap_direction_words(results['answer'], direction)
        glcot = results.get('glcot')
        if isinstance(glcot, dict):
            results['glcot'] = {k: swap_direction_words(v, direction) if isinstance(v, str) else v
                                for k, v in glcot.items()}
        return results
