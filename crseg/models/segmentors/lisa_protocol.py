"""LISA's prompting protocol for the ``[SEG]``-token baseline (questions, answers, [SEG] state).

Source: dvlab-research/LISA at its released commit — ``utils/utils.py`` (the question and
answer lists), ``utils/reason_seg_dataset.py`` (training conversations), ``utils/dataset.py``
(``ValDataset``: validation conversations) and ``model/LISA.py`` (``model_forward``).

* Validation asks one fixed question per query, picked by the annotation's ``is_sentence``:
  a reasoning sentence is followed by "Please output segmentation mask.", a short phrase is
  wrapped as "What is <phrase> in this image? ...". The query is stripped, not lower-cased.
  The assistant turn is teacher-forced to "[SEG]." and the model runs once (no generation).
* Training draws the question from two lists (2 sentence templates, 4 phrase templates; the
  phrase is lower-cased there) and the answer from five "[SEG]" answers, uniformly at random.
* The mask prompt is the last hidden state at the position whose next token is ``[SEG]``
  (LISA compares ``input_ids[:, 1:]`` with the [SEG] id): the state that *predicts* [SEG],
  one position before the [SEG] input token, in training and in validation alike.

In LISA's conversation (llava_v1) the image comes first in the user turn, then a newline and
the question; the adapters' chat templates put the image first as well (see
:meth:`BaseMLLMAdapter.chat_text`), so only the question text is built here.
"""
import random
from typing import Optional

#: Validation questions (``ValDataset``), by ``is_sentence``.
EVAL_SENTENCE = '{text} Please output segmentation mask.'
EVAL_PHRASE = 'What is {text} in this image? Please output segmentation mask.'
#: The teacher-forced validation answer.
EVAL_ANSWER = '[SEG].'
#: Training questions (LISA's LONG_QUESTION_LIST / SHORT_QUESTION_LIST, image token removed).
TRAIN_SENTENCES = ('{text} Please respond with segmentation mask.',
                   '{text} Please output segmentation mask.')
TRAIN_PHRASES = ('Can you segment the {text} in this image?',
                 'Please segment the {text} in this image.',
                 'What is {text} in this image? Please respond with segmentation mask.',
                 'What is {text} in this image? Please output segmentation mask.')
#: Training answers (LISA's ANSWER_LIST).
TRAIN_ANSWERS = ('It is [SEG].', 'Sure, [SEG].', 'Sure, it is [SEG].',
                 'Sure, the segmentation result is [SEG].', '[SEG].')
#: Offset from the [SEG] input position to the hidden state LISA reads.
SEG_STATE_OFFSET = -1


def _checked(query, is_sentence, where: str):
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f'{where}: LISA protocol needs a non-empty string query, got {query!r}')
    if is_sentence is None:
        raise ValueError(f'{where}: LISA protocol picks its question by `is_sentence`, which '
                         'the sample lacks (set it in the annotation or the pipeline)')
    return query.strip(), bool(is_sentence)


def eval_question(query: str, is_sentence: Optional[bool], where: str = 'sample') -> str:
    """The validation question for a query (``ValDataset``'s templates)."""
    text, sentence = _checked(query, is_sentence, where)
    return (EVAL_SENTENCE if sentence else EVAL_PHRASE).format(text=text)


def train_question(query: str, is_sentence: Optional[bool], rng: random.Random,
                   where: str = 'sample') -> str:
    """A training question drawn from LISA's lists (phrases lower-cased, as LISA does)."""
    text, sentence = _checked(query, is_sentence, where)
    if sentence:
        return rng.choice(TRAIN_SENTENCES).format(text=text)
    return rng.choice(TRAIN_PHRASES).format(text=text.lower())


def train_answer(rng: random.Random, seg_token: str = '[SEG]') -> str:
    """A training answer drawn from LISA's list, with ``seg_token`` in place of [SEG]."""
    return rng.choice(TRAIN_ANSWERS).replace('[SEG]', seg_token)


__all__ = ['EVAL_SENTENCE', 'EVAL_PHRASE', 'EVAL_ANSWER', 'TRAIN_SENTENCES', 'TRAIN_PHRASES',
           'TRAIN_ANSWERS', 'SEG_STATE_OFFSET', 'eval_question', 'train_question',
           'train_answer']
