"""tools/benchmark.py: a 4-sample run writing the Markdown + JSON table; table helpers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crseg.analysis.benchmark_table import (make_row, missing_test_fields, outcome_counts,
                                            to_markdown, write_table)

ROOT = Path(__file__).resolve().parents[2]


def _tiny_cfg(tmp_path, base, llava, sam_arch, name):
    cfg = tmp_path / f'{name}.py'
    refiner = f", refiner=dict(arch={sam_arch!r})" if 'attnonly' not in base else ''
    cfg.write_text(
        f"_base_ = ['{ROOT}/{base}']\n"
        f"model = dict(mllm=dict(pretrained='{llava}', max_new_tokens=8){refiner})\n"
        "test_dataloader = dict(batch_size=2)\n")
    return cfg


def _run(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, 'tools/benchmark.py', *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_benchmark_four_samples_two_methods(tmp_path, synth_root, tiny_llava_dir,
                                            tiny_sam_arch):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from crseg.registry import MODELS
    seg = _tiny_cfg(tmp_path, 'configs/baselines/segtoken_tinyllava_tinysam_synthreason.py',
                    tiny_llava_dir, tiny_sam_arch, 'segtoken_tiny')
    attn = _tiny_cfg(tmp_path, 'configs/baselines/attnonly_tinyllava_tinysam_synthreason.py',
                     tiny_llava_dir, tiny_sam_arch, 'attnonly_tiny')
    # a checkpoint of the SegToken model (its [SEG]-resized embeddings must load back)
    init_default_scope('crseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(seg)).model)
    ckpt = tmp_path / 'segtoken.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'bench'
    r = _run([str(seg), str(attn), '--checkpoints', str(ckpt), 'none',
              '--datasets', 'synthreason', '--data-root', f'synthreason={synth_root}',
              '--limit', '4', '--out', str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((out / 'benchmark.json').read_text())
    assert [r_['method'] for r_ in rows] == ['segtoken_tiny', 'attnonly_tiny']
    for row in rows:
        assert row['dataset'] == 'synthreason' and row['num_samples'] == 4
        for p in ('lisa', 'segzero'):
            for k in ('gIoU', 'cIoU'):
                assert 0.0 <= row[f'{p}_{k}'] <= 100.0
        assert row['lisa_gIoU_long'] is not None or row['lisa_gIoU_short'] is not None
        # outcome counts come from the metric: parse_failure plus the method's own keys
        assert row['parse_failure_source'] == 'metric'
        assert row['parse_failures'] == row['outcomes']['parse_failure']
        assert row['parse_failure_rate'] == row['parse_failures'] / 4
        assert all(0 <= v <= 4 for v in row['outcomes'].values()), row['outcomes']
        assert row['sec_per_sample'] > 0 and row['peak_memory_mib'] > 100
        assert row['memory_kind'] == 'cpu_peak_rss'
    assert len(rows[0]['outcomes']) > 1, rows[0]['outcomes']  # [SEG]: its own keys too
    assert rows[0]['checkpoint'] == str(ckpt) and rows[1]['checkpoint'] is None
    assert any('no checkpoint' in n for n in rows[1]['notes'])
    # an untrained [SEG] model rarely emits [SEG]: an empty mask scores 1 under LISA only
    # when the GT is empty too, and always 0 under Seg-Zero -> the protocols differ
    md = (out / 'benchmark.md').read_text()
    assert md.count('\n| segtoken_tiny | synthreason | 4 |') == 1
    for row in rows:  # the Markdown notes name each non-zero count besides parse_failure
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {row['method']} |"))
        for key, v in row['outcomes'].items():
            if key != 'parse_failure' and v:
                assert f'{key} {v}' in line, (key, line)
    assert 'attnonly_tiny' in md and 'SZ gIoU' in md
    assert (out / 'runs' / 'segtoken_tiny__synthreason' / 'benchmark_run.log').exists()


def _benchmark_module():
    sys.path.insert(0, str(ROOT / 'tools'))
    import benchmark
    return benchmark


def test_missing_data_root_fails_before_any_model(tmp_path, tiny_llava_dir, tiny_sam_arch):
    attn = _tiny_cfg(tmp_path, 'configs/baselines/attnonly_tinyllava_tinysam_synthreason.py',
                     tiny_llava_dir, tiny_sam_arch, 'attnonly_tiny')
    with pytest.raises(SystemExit) as err:
        _benchmark_module().main([str(attn), '--datasets', 'synthreason', '--data-root',
                                  f'synthreason={tmp_path / "nowhere"}', '--out',
                                  str(tmp_path / 'b'), '--checkpoints',
                                  str(tmp_path / 'missing.pth')])
    msg = str(err.value.code)
    assert 'missing.pth does not exist' in msg and 'nowhere' in msg
    assert not (tmp_path / 'b' / 'benchmark.md').exists()


def test_random_parts_without_checkpoint_are_refused(tmp_path, synth_root, tiny_llava_dir,
                                                     tiny_sam_arch):
    """The guard of tools/test.py: an entry without a checkpoint whose model has random parts
    (CR-Seg's coarse head, a SAM without checkpoint=) gets an error row naming its config and
    the parts, and the exit status is 1; the same config with ``load_from`` (no
    ``--checkpoints``, as tools/test.py reads it) runs with that checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from crseg.registry import MODELS
    crseg = _tiny_cfg(tmp_path, 'configs/crseg/crseg_tinyllava_tinysam_synthreason.py',
                      tiny_llava_dir, tiny_sam_arch, 'crseg_random')
    init_default_scope('crseg')
    torch.manual_seed(0)
    ckpt = tmp_path / 'crseg.pth'
    torch.save({'state_dict': MODELS.build(Config.fromfile(str(crseg)).model).state_dict()},
               ckpt)
    loaded = tmp_path / 'crseg_load_from.py'
    loaded.write_text(f"_base_ = ['{crseg}']\nload_from = '{ckpt}'\n")
    out = tmp_path / 'b'
    rc = _benchmark_module().main([str(crseg), str(loaded), '--datasets', 'synthreason',
                                   '--data-root', f'synthreason={synth_root}', '--limit', '2',
                                   '--out', str(out), '--in-process'])
    assert rc == 1
    refused, ran = json.loads((out / 'benchmark.json').read_text())
    assert refused['method'] == 'crseg_random' and refused['num_samples'] in (None, 0)
    msg = refused['error']
    assert f'tools/benchmark.py crseg_random ({crseg}) without a checkpoint' in msg, msg
    assert 'coarse_head (EAPCoarseHead' in msg and 'refiner (SAMRefiner' in msg, msg
    assert ran['checkpoint'] == str(ckpt) and ran['num_samples'] == 2
    assert 'error' not in ran or not ran['error']
    assert 'without a checkpoint' in (out / 'benchmark.md').read_text()


def test_unknown_dataset_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="imaginary.*synthreason"):
        _benchmark_module().main([
            str(ROOT / 'configs/baselines/attnonly_tinyllava_tinysam_synthreason.py'),
            '--datasets', 'imaginary', '--out', str(tmp_path)])


def test_make_row_and_markdown(tmp_path):
    metrics = {'lisa/gIoU': 50.0, 'lisa/cIoU': 40.0, 'lisa/gIoU_long': 45.0,
               'lisa/cIoU_long': 35.0, 'lisa/num_samples': 4, 'segzero/gIoU': 25.0,
               'segzero/cIoU': 38.0, 'segzero/num_samples': 4,
               'lisa/n_parse_failure': 1, 'lisa/n_row_fallback': 2, 'lisa/n_clipped': 0,
               'segzero/n_parse_failure': 1, 'segzero/n_row_fallback': 2, 'segzero/n_clipped': 0}
    row = make_row('m', 'd', metrics, checkpoint='c.pth', seconds=2.0, peak_mib=512.0,
                   memory_kind='cpu_peak_rss')
    assert row['parse_failures'] == 1 and row['parse_failure_source'] == 'metric'
    assert row['parse_failure_rate'] == 0.25 and row['sec_per_sample'] == 0.5
    assert row['outcomes'] == dict(parse_failure=1, row_fallback=2, clipped=0)
    assert row['lisa_gIoU_short'] is None and row['notes'] == []
    no_split = make_row('m', 'refcoco', {'lisa/gIoU': 1.0, 'lisa/num_samples': 2})
    assert 'no is_sentence: short/long n/a' in no_split['notes']
    assert any('no checkpoint' in n for n in no_split['notes'])
    # a model that writes no outcomes: parse failures unknown, not zero
    assert no_split['parse_failures'] is None and no_split['parse_failure_rate'] is None
    assert no_split['parse_failure_source'] == 'none' and no_split['outcomes'] == {}
    md = to_markdown([row, no_split])
    assert '| m | d | 4 | 50.0 | 40.0 | n/a | 45.0 / 35.0 | 25.0 | 38.0 |' in md
    assert '25.0% (1)' in md and '512 (RSS)' in md
    # non-zero outcome counts other than parse_failure go into the notes
    line = next(ln for ln in md.splitlines() if ln.startswith('| m | d |'))
    assert line.endswith('| outcomes: row_fallback 2 |'), line
    assert 'outcomes' not in next(ln for ln in md.splitlines() if ln.startswith('| m | refcoco'))
    paths = write_table([row], str(tmp_path))
    back = json.loads(Path(paths[1]).read_text())[0]
    assert back['lisa_gIoU'] == 50.0 and back['outcomes']['row_fallback'] == 2


def test_outcome_counts_from_metric_keys():
    assert outcome_counts({'lisa/n_seg_missing': 3, 'lisa/num_samples': 5, 'lisa/gIoU': 1.0,
                           'segzero/n_seg_missing': 3}) == dict(seg_missing=3)
    # only the Seg-Zero evaluator ran
    assert outcome_counts({'segzero/n_clipped': 1}) == dict(clipped=1)
    assert outcome_counts({'lisa/num_samples': 5}) == {}


def test_missing_test_fields():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    s = SegDataSample(metainfo=dict(query='q'))
    assert missing_test_fields({'data_samples': s}) == ['gt_sem_seg']
    s.gt_sem_seg = PixelData(data=torch.zeros(1, 2, 2))
    assert missing_test_fields({'data_samples': s}) == []
    assert missing_test_fields(SegDataSample()) == ['query', 'gt_sem_seg']


@pytest.mark.parametrize('argv, msg', [
    (['a.py', 'b.py', '--checkpoints', 'x'], '--checkpoints has 1 entries for 2 configs'),
    (['a.py', '--limit', '0'], '--limit must be >= 1'),
])
def test_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit):
        _benchmark_module().parse_args(argv)
    assert msg in capsys.readouterr().err
