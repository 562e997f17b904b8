"""GLCoT: global -> local -> answer chain of thought (prompt, training target, parser).

Response format (plain text, tokenizer-friendly, one line per part)::

    scene: <what the whole image shows>
    region: <the part of the image that matters and its details>
    answer: <short name of the target>

``mode='plain'`` (ablation) uses the last line only. The markers are matched case-insensitively.

Parser rules (:meth:`GLCoT.parse`): the answer is the text after the *last* ``answer:`` marker up
to the end of its line; ``scene:`` / ``region:`` texts run to the next marker (the region text's
char span is ``GLCoTParse.local_span``). Fallbacks, each logged with a warning and returned as
``GLCoTParse.fallback`` (the reason; the segmentor records it as the sample's ``parse_fallback``
outcome):

* no ``answer:`` marker (or nothing after it) -> the last sentence of the response (text after
  the last '.', '!', '?' or newline that has any content);
  (a leading marker is dropped from it);
* nothing usable (empty response, only markers/punctuation) -> answer '' with span (0, 0).

Prompts (:meth:`GLCoT.build_prompt`) are :class:`QueryPrompt` strings: they know where the
query is in them, so an MLLM adapter that must cut a prompt too long for its context cuts the
query's tail and keeps the instruction after it whole.
"""
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from mmengine.logging import print_log

from crseg.registry import MODELS

MARKERS = {'global': 'scene:', 'local': 'region:', 'answer': 'answer:'}
_MARKER_RE = re.compile(r'\b(scene|region|answer)\s*:', re.IGNORECASE)

GLCOT_INSTRUCTION = ('First describe the whole scene, then the region that matters and its '
                     'details, then name the target. Reply as "scene: ... region: ... '
                     'answer: ...", one part per line.')
PLAIN_INSTRUCTION = 'Name the target. Reply as "answer: ...".'


class QueryPrompt(str):
    """A prompt text that knows the char span ``query_span`` = [start, end) of the user's query
    in it. It is a ``str`` everywhere; an MLLM adapter that must cut the prompt to fit its
    context cuts only query tokens, from the query's end, and keeps the text before and after
    the query (an instruction) whole. A plain ``str`` prompt counts as all query."""

    def __new__(cls, text: str, query_span: Tuple[int, int]):
        start, end = (int(v) for v in query_span)
        if not 0 <= start <= end <= len(text):
            raise ValueError(f'QueryPrompt: query_span {tuple(query_span)} is not inside the '
                             f'{len(text)} chars of the text')
        obj = super().__new__(cls, text)
        obj.query_span = (start, end)
        return obj

    @classmethod
    def around(cls, before: str, query: str, after: str) -> 'QueryPrompt':
        """``before + query + after`` with the query's span."""
        return cls(before + query + after, (len(before), len(before) + len(query)))

    def __getnewargs__(self):  # copy / pickle keep the span
        return str(self), self.query_span


@dataclass
class GLCoTParse:
    """A parsed response; ``answer_span`` is a char span in the response, ``fallback`` why.

    ``local_span``: the char span of ``local_text`` in the response (None when the response has
    no ``region:`` marker), so that its tokens can be found like the answer's.
    """
    global_text: str
    local_text: str
    answer: str
    answer_span: Tuple[int, int]
    fallback: Optional[str] = None
    local_span: Optional[Tuple[int, int]] = None


def _strip_span(text: str, start: int, end: int) -> Tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@MODELS.register_module()
class GLCoT:
    """Prompt builder, target builder and parser for the GLCoT response format.

    Args:
        mode: 'glcot' (scene -> region -> answer) or 'plain' (answer only).
        instruction: text appended to the query in the prompt (defaults per mode).
    """

    def __init__(self, mode: str = 'glcot', instruction: Optional[str] = None):
        if mode not in ('glcot', 'plain'):
            raise ValueError(f"GLCoT: mode={mode!r}, expected 'glcot' or 'plain'")
        self.mode = mode
        self.instruction = instruction if instruction is not None else (
            GLCOT_INSTRUCTION if mode == 'glcot' else PLAIN_INSTRUCTION)

    def build_prompt(self, query: str) -> QueryPrompt:
        """User-message text (the MLLM adapter applies the chat template): the query, a line
        break, the instruction; a :class:`QueryPrompt`, so that a prompt too long for the
        model's context loses the query's tail, never the instruction."""
        return QueryPrompt.around('', query.strip(), f'\n{self.instruction}')

    def build_target(self, ann: Optional[dict],
                     answer: Optional[str] = None) -> Tuple[str, Tuple[int, int]]:
        """Training response text and the answer's char span inside it.

        ``ann``: ``{global, local, answer}`` (SynthReason's ``glcot`` entry); ``answer``
        overrides ``ann['answer']``. In 'glcot' mode missing/empty global or local parts are
        left out (e.g. RefCOCO samples with no annotation give "answer: ..." only).
        """
        ann = dict(ann or {})
        ans = answer if answer is not None else ann.get('answer')
        if not isinstance(ans, str) or not ans.strip():
            raise ValueError(f'GLCoT.build_target: no answer text (ann={ann!r}, '
                             f'answer={answer!r})')
        lines = []
        if self.mode == 'glcot':
            for key in ('global', 'local'):
                part = ann.get(key)
                if part is not None and not isinstance(part, str):
                    raise ValueError(f'GLCoT.build_target: ann[{key!r}] must be a string, got '
                                     f'{type(part).__name__}')
                if part and part.strip():
                    lines.append(f"{MARKERS[key]} {' '.join(part.split())}")
        prefix = '\n'.join(lines + [MARKERS['answer'] + ' '])
        ans = ' '.join(ans.split())
        return prefix + ans, (len(prefix), len(prefix) + len(ans))

    def check_prefix_parts(self, parts: Sequence[str]) -> Tuple[str, ...]:
        """``parts`` as a tuple if :meth:`target_prefix` can write them: a leading run of
        ('global', 'local'), and in 'glcot' mode unless empty; a ``ValueError`` otherwise."""
        if isinstance(parts, str):
            raise ValueError(f'GLCoT: parts={parts!r} is a string; give a sequence of part '
                             "names, e.g. ('global',)")
        parts = tuple(parts)
        order = ('global', 'local')
        if parts != order[:len(parts)]:
            raise ValueError(f'GLCoT: parts={parts!r}, expected a leading run of {order}')
        if parts and self.mode != 'glcot':
            raise ValueError(f"GLCoT: mode={self.mode!r} has no {parts} parts; forcing them "
                             "needs GLCoT(mode='glcot')")
        return parts

    def target_prefix(self, ann: Optional[dict], parts: Sequence[str]) -> str:
        """The start of :meth:`build_target`'s text that holds ``parts`` of ``ann``, up to and
        including the line break after the last of them ('' for no parts). ``parts``: a
        leading run of ('global', 'local'), e.g. ``('global',)``: "scene: ...\\n". For
        analysis: a response forced to start this way shows how much the rest follows it."""
        parts = self.check_prefix_parts(parts)
        if not parts:
            return ''
        ann = dict(ann or {})
        missing = [k for k in parts if not str(ann.get(k) or '').strip()]
        if missing:
            raise ValueError(f'GLCoT.target_prefix: the annotation has no {missing} text '
                             f'(ann={ann!r})')
        text, span = self.build_target({k: ann[k] for k in parts}, answer='-')
        return text[:span[0] - len(MARKERS['answer']) - 1]

    def parse(self, response: str) -> GLCoTParse:
        """Split a response into scene / region / answer (see module docstring)."""
        marks = [(m.group(1).lower(), m.start(), m.end()) for m in _MARKER_RE.finditer(response)]
        parts = {}
        for i, (name, _, end) in enumerate(marks):
            stop = marks[i + 1][1] if i + 1 < len(marks) else len(response)
            parts[name] = (end, stop)  # later markers of the same name win
        spans = {k: _strip_span(response, *v) for k, v in parts.items()}
        texts = {k: response[slice(*v)] for k, v in spans.items()}
        span, why = None, None
        if 'answer' in parts:
            start, stop = parts['answer']
            newline = response.find('\n', start, stop)
            span = _strip_span(response, start, newline if newline >= 0 else stop)
            if span[0] == span[1]:
                span, why = None, 'empty answer after the answer marker'
        else:
            why = 'no answer marker'
        if span is None:
            span = self._last_sentence(response)
            if span[1] == span[0]:
                why = 'empty response' if not response.strip() else f'{why}, no text to use'
            print_log(f'GLCoT.parse: {why}; fallback answer span {span} = '
                      f'{response[span[0]:span[1]]!r}', logger='current', level=30)
        return GLCoTParse(texts.get('scene', ''), texts.get('region', ''),
                          response[span[0]:span[1]], span, why, spans.get('region'))

    @staticmethod
    def _last_sentence(text: str) -> Tuple[int, int]:
        pieces = [(m.start(), m.end()) for m in re.finditer(r'[^.!?\n]+', text)]
        for start, end in reversed(pieces):
            marker = _MARKER_RE.match(text, start)
            if marker is not None and not text[start:marker.start()].strip():
                start = marker.end()  # drop a leading marker
            s = _strip_span(text, start, end)
            if s[1] > s[0]:
                return s
        return (0, 0)


__all__ = ['GLCoT', 'GLCoTParse', 'MARKERS', 'QueryPrompt']
