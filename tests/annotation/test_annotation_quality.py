"""The annotator's quality gate: one reason per rejection, the consistency rule, empty answers."""
import inspect

import pytest

from crseg.annotation.quality import DEFAULT_EMPTY_ANSWERS, QualityGate, content_words, head_word
from crseg.glcot import GLCoT


def reply(scene='a kitchen with a table', region='the red cup on the table', answer='red cup'):
    return f'scene: {scene}\nregion: {region}\nanswer: {answer}'


def test_default_empty_answers_are_crsegs():
    """The gate accepts exactly the answers CRSeg turns into an empty mask."""
    from crseg.models.segmentors.crseg import CRSeg
    default = inspect.signature(CRSeg.__init__).parameters['empty_answers'].default
    assert tuple(default) == DEFAULT_EMPTY_ANSWERS


def test_accepts_a_good_reply_as_glcot_parses_it():
    gate = QualityGate()
    v = gate.check(reply(), has_target=True)
    assert v.ok and v.consistent is True
    parsed = GLCoT().parse(reply())
    assert v.glcot == {'global': parsed.global_text, 'local': parsed.local_text,
                       'answer': parsed.answer}
    # the accepted parts rebuild a training target that parses back to the same answer
    target, span = GLCoT().build_target(v.glcot)
    assert target[slice(*span)] == 'red cup'


@pytest.mark.parametrize('text,has_target,reason', [
    ('It is the red cup.', True, 'unparsed'),
    ('', True, 'unparsed'),
    ('scene: a kitchen\nanswer: cup', True, 'missing_part'),
    ('region: the cup\nanswer: cup', True, 'missing_part'),
    (reply(answer='none'), True, 'answer_says_empty'),
    (reply(answer='Nothing.'), True, 'answer_says_empty'),
    (reply(answer='red cup'), False, 'empty_target_answer'),
    (reply(answer='the big red ceramic cup on the table'), True, 'long_answer'),
    (reply(region='a shiny object near the window'), True, 'inconsistent'),
])
def test_each_rejection_has_its_reason(text, has_target, reason):
    v = QualityGate(max_answer_words=6).check(text, has_target)
    assert not v.ok and v.reason == reason and v.glcot is None


def test_empty_answer_marker_is_unparsed():
    # GLCoT.parse falls back when nothing follows "answer:"; the gate never keeps a fallback
    v = QualityGate().check('scene: s\nregion: r\nanswer: ', True)
    assert v.reason == 'unparsed' and 'empty answer' in v.detail


def test_empty_target_needs_an_empty_answer():
    gate = QualityGate()
    for ans in DEFAULT_EMPTY_ANSWERS:
        assert gate.check(reply(answer=ans), has_target=False).ok
    assert gate.check(reply(answer='None.'), has_target=False).glcot['answer'] == 'None.'
    assert QualityGate(empty_answers=('no target',)).check(
        reply(answer='none'), False).reason == 'empty_target_answer'


def test_word_limit_is_configurable():
    text = reply(region='the big red cup', answer='big red cup')
    assert QualityGate(max_answer_words=3).check(text, True).ok
    assert QualityGate(max_answer_words=2).check(text, True).reason == 'long_answer'
    with pytest.raises(ValueError, match='max_answer_words'):
        QualityGate(max_answer_words=0)


def test_head_word_and_rules():
    assert head_word('the red cup on the left') == 'cup'
    assert head_word('man in a blue shirt') == 'man'
    assert head_word('the one') is None
    assert content_words('the red cup on the left') == ['red', 'cup', 'left']
    region = 'two red mugs stand near the cups'
    assert QualityGate(consistency='head').consistent('red cup', region)  # plural matches
    assert not QualityGate(consistency='head').consistent('red mug handle', region)
    assert QualityGate(consistency='any').consistent('red mug handle', region)
    assert not QualityGate(consistency='all').consistent('red mug handle', region)
    assert QualityGate(consistency='all').consistent('red mug', region)
    assert QualityGate(consistency='off').consistent('x', 'y') is None
    assert QualityGate(consistency='off').check(reply(region='nothing here'), True).ok
    with pytest.raises(ValueError, match='consistency'):
        QualityGate(consistency='fuzzy')
