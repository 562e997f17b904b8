"""GLCoT prompt / target / parser, including partial and garbage responses."""
import pytest

from crseg.glcot import GLCoT
from crseg.registry import MODELS

ANN = {'global': 'a kitchen with a table', 'local': 'a red mug near the  window',
       'answer': 'the red mug'}


def test_prompt_and_target_round_trip():
    g = MODELS.build(dict(type='GLCoT'))
    assert g.build_prompt('  what holds tea? ').startswith('what holds tea?\n')
    text, span = g.build_target(ANN)
    assert text == ('scene: a kitchen with a table\nregion: a red mug near the window\n'
                    'answer: the red mug')
    assert text[span[0]:span[1]] == 'the red mug'
    p = g.parse(text)
    assert (p.global_text, p.local_text, p.answer) == (
        'a kitchen with a table', 'a red mug near the window', 'the red mug')
    assert p.answer_span == span and p.fallback is None


def test_plain_mode_and_missing_parts():
    plain = GLCoT(mode='plain')
    text, span = plain.build_target(ANN)
    assert text == 'answer: the red mug' and text[span[0]:span[1]] == 'the red mug'
    assert 'answer' in plain.build_prompt('q')
    g = GLCoT()
    text, span = g.build_target(None, answer='the cat')
    assert text == 'answer: the cat'
    text, _ = g.build_target({'global': 'a room', 'answer': 'x'})
    assert text == 'scene: a room\nanswer: x'
    with pytest.raises(ValueError, match='no answer'):
        g.build_target({'global': 'a room'})
    with pytest.raises(ValueError, match='mode'):
        GLCoT(mode='cot')


def test_parse_partial_responses():
    g = GLCoT()
    p = g.parse('region: the left shelf\nAnswer:  the blue book \nthanks')
    assert p.answer == 'the blue book' and p.global_text == '' and p.fallback is None
    assert p.local_text == 'the left shelf'
    resp = 'scene: a street.\nregion: the car at the corner'
    p = g.parse(resp)  # missing answer -> last sentence (marker dropped)
    assert p.fallback == 'no answer marker' and p.answer == 'the car at the corner'
    assert resp[p.answer_span[0]:p.answer_span[1]] == p.answer
    assert p.global_text == 'a street.'


@pytest.mark.parametrize('resp,answer', [
    ('', ''), ('   \n', ''), ('!!! ???', ''), ('answer:', ''),
    ('blah blah. the dog is it', 'the dog is it'), ('answer: \n the cat.', 'the cat')])
def test_parse_garbage_falls_back(resp, answer):
    g = GLCoT()
    p = g.parse(resp)
    assert p.fallback is not None
    assert p.answer == answer == resp[p.answer_span[0]:p.answer_span[1]]


def test_each_fallback_is_logged_and_returned_per_call(monkeypatch):
    logged = []
    monkeypatch.setattr('crseg.glcot.print_log', lambda msg, **kw: logged.append(msg))
    g = GLCoT()
    assert g.parse('just words').fallback == 'no answer marker'
    assert g.parse('answer: the cat').fallback is None  # no state carried between calls
    assert g.parse('').fallback == 'empty response'
    assert len(logged) == 2 and 'no answer marker' in logged[0] and 'empty' in logged[1]
    assert not hasattr(g, 'num_fallbacks')  # the segmentor records outcomes per sample


@pytest.mark.parametrize('resp,region', [
    ('scene: a kitchen\nregion:  a red mug near the window \nanswer: the red mug',
     'a red mug near the window'),
    ('REGION: the left shelf\nAnswer: the blue book', 'the left shelf'),
    # later markers of the same name win (the parser's rule), for the span too
    ('region: In the right region: a large green triangle.\nanswer: the green triangle',
     'a large green triangle.'),
    ('region:\nanswer: x', ''),
])
def test_local_span_locates_the_region_text(resp, region):
    p = GLCoT().parse(resp)
    assert p.local_text == region
    assert resp[p.local_span[0]:p.local_span[1]] == region
    assert resp.count(region) == 1 or region == ''


@pytest.mark.parametrize('resp', ['answer: the cat', 'scene: a room\nanswer: x', '', 'a dog'])
def test_no_region_marker_no_local_span(resp):
    p = GLCoT().parse(resp)
    assert p.local_span is None and p.local_text == ''


def test_target_prefix_is_the_start_of_the_target():
    g = GLCoT()
    ann = {'global': '2 objects:  a; b.', 'local': 'At the top: x.', 'answer': 'the x'}
    text, _ = g.build_target(ann)
    assert g.target_prefix(ann, ()) == ''
    assert g.target_prefix(ann, ('global',)) == 'scene: 2 objects: a; b.\n'
    both = g.target_prefix(ann, ['global', 'local'])
    assert both == 'scene: 2 objects: a; b.\nregion: At the top: x.\n'
    assert text.startswith(both) and text[len(both):] == 'answer: the x'
    # what follows the forced start parses as the rest of the chain
    assert g.parse(both + 'answer: the x').local_text == 'At the top: x.'


@pytest.mark.parametrize('parts,match', [
    (('local',), 'leading run'), (('global', 'answer'), 'leading run'),
    ('global', "parts='global' is a string"),
    (('global', 'local'), r"no \['local'\] text")])
def test_target_prefix_refuses(parts, match):
    with pytest.raises(ValueError, match=match):
        GLCoT().target_prefix({'global': 'g', 'local': ' ', 'answer': 'a'}, parts)
    with pytest.raises(ValueError, match="mode='plain'"):
        GLCoT(mode='plain').target_prefix({'global': 'g'}, ('global',))
