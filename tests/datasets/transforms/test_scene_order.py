"""CanonicalSceneOrder: the scene line in reading order (rules in its module docstring)."""
from pathlib import Path

import pytest

from crseg.datasets.synthreason import generate_sample
from crseg.datasets.transforms import CanonicalSceneOrder, canonical_scene
from crseg.registry import TRANSFORMS


def test_reading_order_rows_then_columns_then_colour_shape():
    # expected order written from the rules: top row (left, middle, right), middle row, bottom
    # row; inside "center": blue < red by colour, and inside "bottom": red circle < red star
    text = ('7 objects: red star bottom; red hexagon center; green circle top right; '
            'blue square center; yellow triangle top left; red circle bottom; purple star left.')
    assert canonical_scene(text) == (
        '7 objects: yellow triangle top left; green circle top right; purple star left; '
        'blue square center; red hexagon center; red circle bottom; red star bottom.')


def test_ties_keep_drawing_order_and_items_are_kept():
    text = '3 objects: blue hexagon bottom; blue hexagon bottom; green star top.'
    assert canonical_scene(text) == (
        '3 objects: green star top; blue hexagon bottom; blue hexagon bottom.')
    assert canonical_scene('1 objects: red star center.') == '1 objects: red star center.'


def test_generator_lines_keep_their_items_and_are_sorted():
    rank = {'top left': 0, 'top': 1, 'top right': 2, 'left': 3, 'center': 4, 'right': 5,
            'bottom left': 6, 'bottom': 7, 'bottom right': 8}
    for index in range(8):
        glob = generate_sample(0, 'train', index)[1]['glcot'][0]['global']
        out = canonical_scene(glob)
        before = glob.split(': ', 1)[1][:-1].split('; ')
        after = out.split(': ', 1)[1][:-1].split('; ')
        assert sorted(before) == sorted(after)
        ranks = [rank[' '.join(it.split(' ')[2:])] for it in after]
        assert ranks == sorted(ranks)


def test_transform_replaces_glcot_and_passes_samples_without_it():
    t = TRANSFORMS.build(dict(type='CanonicalSceneOrder'))
    glcot = {'global': '2 objects: red star bottom; blue circle top.', 'local': 'x', 'answer': 'y'}
    out = t(dict(glcot=glcot, ann_path='a.json'))
    assert out['glcot'] == {'global': '2 objects: blue circle top; red star bottom.',
                            'local': 'x', 'answer': 'y'}
    assert glcot['global'] == '2 objects: red star bottom; blue circle top.'  # not mutated
    assert CanonicalSceneOrder()(dict(glcot=None)) == dict(glcot=None)


@pytest.mark.parametrize('text,message', [
    ('a red star at the top.', 'not a SynthReason scene line'),
    ('3 objects: red star top; blue circle left.', 'counts 3 objects but lists 2'),
    ('1 objects: red star upstairs.', "unknown region word 'upstairs'"),
    ('1 objects: red.', 'is not "colour shape region"'),
])
def test_bad_scene_line_names_the_file_and_the_text(text, message):
    with pytest.raises(ValueError, match=message) as err:
        CanonicalSceneOrder()(dict(glcot={'global': text}, ann_path='data/x/train_000007.json'))
    assert 'data/x/train_000007.json' in str(err.value)


@pytest.mark.parametrize('stage', ['', 'align_'])
def test_lever_configs_differ_from_the_default_only_by_the_transform(repo_root, stage):
    from mmengine.config import Config
    c = Path(repo_root) / 'configs' / 'crseg'
    lever = Config.fromfile(str(c / f'crseg_tinyllava_tinysam_sortedscene_{stage}synthreason.py'))
    base = Config.fromfile(str(c / f'crseg_tinyllava_tinysam_{stage}synthreason.py'))
    pipe = lever.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipe].count('CanonicalSceneOrder') == 1
    assert [t for t in pipe if t['type'] != 'CanonicalSceneOrder'] == \
        base.train_dataloader.dataset.pipeline
    lever.train_dataloader.dataset.pipeline = base.train_dataloader.dataset.pipeline
    lever = lever.to_dict()
    assert lever.pop('sortedscene_train_pipeline') == pipe
    assert lever == base.to_dict()
