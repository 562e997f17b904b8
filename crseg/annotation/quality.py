"""Quality gate on every teacher reply; each rejection has one reason (counted in the report).

Checks, in order (the first failing one is the reason):

``unparsed``            :meth:`GLCoT.parse` needed a fallback (no ``answer:`` line, ...)
``missing_part``        the ``scene:`` or ``region:`` text is empty
``empty_answer``        the answer is empty although the image has a target
``answer_says_empty``   the image has a target but the answer is an empty answer ("none")
``empty_target_answer`` the image has no target but the answer is not in ``empty_answers``
``long_answer``         the answer has more than ``max_answer_words`` words
``inconsistent``        the answer-region consistency rule fails (below)

Consistency (the reasoning/answer mismatch GLCoT exists to reduce): the answer's *head* word is
its last content word before the first preposition or relative word ("the red cup on the left"
-> "cup"). ``consistency='head'`` needs the head in the region text, ``'any'`` any content word of
the answer, ``'all'`` every one, ``'off'`` skips the check. Words match case-insensitively and
up to a plural "s"/"es". Every reply that reaches the check is counted (consistent or not), so
the report gives the teacher's consistency rate, not only the rejections.
"""
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from crseg.glcot import GLCoT

REASONS = ('unparsed', 'missing_part', 'empty_answer', 'answer_says_empty',
           'empty_target_answer', 'long_answer', 'inconsistent')
CONSISTENCY_RULES = ('head', 'any', 'all', 'off')
# Matches CRSeg's default ``empty_answers`` (crseg/models/segmentors/crseg.py).
DEFAULT_EMPTY_ANSWERS = ('none', 'nothing', 'no object')
STOPWORDS = frozenset(
    'a an the this that these those its it his her their our my your some any one two each '
    'and or but is are was were be been being there here very more most less least'.split())
CUT_WORDS = frozenset(
    'of on in at with without near next behind under over above below beside between by '
    'from for to into onto that which who whose where while than like as'.split())
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _words(text: str) -> list:
    return [w.lower() for w in _WORD.findall(text)]


def _stem(word: str) -> str:
    for suffix in ('es', 's'):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-len(suffix)]
    return word


def content_words(answer: str) -> list:
    return [w for w in _words(answer) if w not in STOPWORDS and w not in CUT_WORDS]


def head_word(answer: str) -> Optional[str]:
    """Last content word before the first preposition/relative word (None if there is none)."""
    head = None
    for w in _words(answer):
        if w in CUT_WORDS and head is not None:
            break
        if w not in STOPWORDS and w not in CUT_WORDS:
            head = w
    return head


def normalize_answer(answer: str) -> str:
    """As CRSeg.predict compares answers with ``empty_answers``."""
    return answer.strip().lower().strip(' .')


@dataclass
class Verdict:
    """A gate decision: ``glcot`` is set when accepted, else ``reason`` (+ ``detail``)."""
    glcot: Optional[dict] = None
    reason: Optional[str] = None
    detail: str = ''
    consistent: Optional[bool] = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class QualityGate:
    max_answer_words: int = 6
    empty_answers: Sequence[str] = DEFAULT_EMPTY_ANSWERS
    consistency: str = 'head'
    _glcot: GLCoT = field(default_factory=GLCoT, repr=False)

    def __post_init__(self):
        if self.consistency not in CONSISTENCY_RULES:
            raise ValueError(f'QualityGate: consistency={self.consistency!r}, expected one of '
                             f'{CONSISTENCY_RULES}')
        if self.max_answer_words < 1:
            raise ValueError(f'QualityGate: max_answer_words must be >= 1, got '
                             f'{self.max_answer_words}')
        self._empty = {normalize_answer(a) for a in self.empty_answers}

    def consistent(self, answer: str, region: str) -> Optional[bool]:
        """The consistency rule on one answer/region pair (None when the rule is 'off')."""
        if self.consistency == 'off':
            return None
        region_words = {_stem(w) for w in _words(region)}
        if self.consistency == 'head':
            head = head_word(answer)
            return head is not None and _stem(head) in region_words
        words = [_stem(w) for w in content_words(answer)]
        if not words:
            return False
        hits = [w in region_words for w in words]
        return any(hits) if self.consistency == 'any' else all(hits)

    def check(self, response: str, has_target: bool) -> Verdict:
        parsed = self._glcot.parse(response)
        if parsed.fallback is not None:
            return Verdict(reason='unparsed', detail=parsed.fallback)
        if not parsed.global_text or not parsed.local_text:
            missing = 'scene' if not parsed.global_text else 'region'
            return Verdict(reason='missing_part', detail=f'no {missing} text')
        answer = ' '.join(parsed.answer.split())
        norm = normalize_answer(answer)
        if has_target and not norm:
            return Verdict(reason='empty_answer')
        if has_target and norm in self._empty:
            return Verdict(reason='answer_says_empty', detail=f'answer {answer!r}')
        if not has_target:
            if norm not in self._empty:
                return Verdict(reason='empty_target_answer',
                               detail=f'answer {answer!r} is not one of {sorted(self._empty)}')
            return Verdict(glcot=self._glcot_dict(parsed, answer))
        if len(answer.split()) > self.max_answer_words:
            return Verdict(reason='long_answer', detail=f'{len(answer.split())} words > '
                           f'{self.max_answer_words}: {answer!r}')
        ok = self.consistent(answer, parsed.local_text)
        if ok is False:
            return Verdict(reason='inconsistent', consistent=False,
                           detail=f'{self.consistency} word(s) of {answer!r} not in the region '
                           f'text {parsed.local_text!r:.120}')
        return Verdict(glcot=self._glcot_dict(parsed, answer), consistent=ok)

    @staticmethod
    def _glcot_dict(parsed, answer: str) -> dict:
        return {'global': ' '.join(parsed.global_text.split()),
                'local': ' '.join(parsed.local_text.split()), 'answer': answer}


__all__ = ['QualityGate', 'Verdict', 'REASONS', 'CONSISTENCY_RULES', 'DEFAULT_EMPTY_ANSWERS',
           'head_word', 'content_words', 'normalize_answer']
