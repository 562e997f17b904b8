"""SynthReason CLI (determinism across workers, ReasonSeg format) and browse_dataset."""
import importlib.util
import sys
from pathlib import Path

import cv2
from mmengine.registry import init_default_scope

from crseg.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]


def load_tool(rel):
    spec = importlib.util.spec_from_file_location(Path(rel).stem + '_tool', ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # so worker processes can unpickle its functions
    spec.loader.exec_module(mod)
    return mod


def test_generate_load_and_browse(tmp_path):
    gen = load_tool('tools/dataset_converters/synthreason.py')
    args = ['--num-train', '6', '--num-val', '4', '--seed', '5', '--img-size', '96']
    gen.main(['--out', str(tmp_path / 'one'), '--workers', '1'] + args)
    gen.main(['--out', str(tmp_path / 'two'), '--workers', '2'] + args)
    for split, n in (('train', 6), ('val', 4)):
        files = sorted(p.name for p in (tmp_path / 'one' / split).iterdir())
        assert len(files) == 2 * n
        for name in files:  # identical bytes whatever the worker count
            assert (tmp_path / 'one' / split / name).read_bytes() == \
                (tmp_path / 'two' / split / name).read_bytes(), name

    init_default_scope('crseg')
    ds = DATASETS.build(
        dict(type='ReasonSegDataset',
             data_root=str(tmp_path / 'one'),
             split='train',
             first_text_only=False))
    assert len(ds) == 12
    info = ds.get_data_info(0)
    assert set(info['glcot']) == {'global', 'local', 'answer'} and info['query_type']

    browse = load_tool('tools/analysis_tools/browse_dataset.py')
    out = tmp_path / 'browse'
    browse.main(['--dataset-type', 'ReasonSegDataset', '--data-root', str(tmp_path / 'one'),
                 '--split', 'val', '--output-dir', str(out), '--num', '3'])
    pngs = sorted(out.glob('*.png'))
    assert [p.name
            for p in pngs] == ['0000_val_000000.png', '0001_val_000001.png', '0002_val_000002.png']
    img = cv2.imread(str(pngs[0]))
    assert img.shape[1] == 480 and img.shape[0] > 480  # 96 px x5 + text band


def test_browse_from_config(tmp_path):
    gen = load_tool('tools/dataset_converters/synthreason.py')
    gen.main(
        ['--out',
         str(tmp_path / 'd'), '--num-train', '0', '--num-val', '2', '--img-size', '64'])
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        "default_scope = 'crseg'\n"
        "val_dataloader = dict(batch_size=1, dataset=dict(type='ReasonSegDataset',"
        f" data_root='{tmp_path / 'd'}', split='val',"
        " pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadReasonSegAnnotations'),"
        " dict(type='ReasoningRandomFlip', prob=1.0), dict(type='PackReasonSegInputs')]))\n")
    browse = load_tool('tools/analysis_tools/browse_dataset.py')
    browse.main([str(cfg), '--output-dir', str(tmp_path / 'b'), '--split', 'val'])
    assert len(list((tmp_path / 'b').glob('*.png'))) == 2
