"""tools/analysis_tools/calibrate_iterations.py: the arithmetic, and one real run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))
from calibrate_iterations import budget_seconds, iteration_seconds, iterations_for  # noqa: E402


def test_iteration_seconds_skips_the_warmup(tmp_path):
    f = tmp_path / 'scalars.json'
    recs = [dict(time=9.0, step=1), dict(time=7.0, step=2), dict(time=1.0, step=3),
            dict(time=3.0, step=4), dict(lr=0.1, step=4)]
    f.write_text(''.join(json.dumps(r) + '\n' for r in recs))
    assert iteration_seconds(str(f), warmup=2) == 2.0
    with pytest.raises(ValueError, match='after iteration 4'):
        iteration_seconds(str(f), warmup=4)


def test_budget_and_iterations():
    # CR-Seg-like reference: 300 iterations at 0.4 s + 800 at 0.7 s = 680 s
    w = budget_seconds([(300, 0.4), (800, 0.7)])
    assert w == pytest.approx(680.0)
    assert iterations_for(w, 0.8) == 850  # 850.0
    assert iterations_for(w, 0.75) == 910  # 906.7 -> nearest ten
    assert iterations_for(1.0, 5.0) == 10  # never below ten
    with pytest.raises(ValueError, match='> 0'):
        iterations_for(w, 0.0)
    with pytest.raises(ValueError, match='no reference stage'):
        budget_seconds([])


def test_calibrates_a_target_from_a_reference(tmp_path, synth_root, tiny_llava_dir,
                                              tiny_sam_arch):
    ref = tmp_path / 'ref.py'
    ref.write_text(
        f"_base_ = ['{ROOT}/configs/crseg/crseg_tinyllava_tinysam_align_synthreason.py']\n"
        f"model = dict(refiner=dict(arch={tiny_sam_arch!r}))\n"
        "train_dataloader = dict(batch_size=2)\ntrain_cfg = dict(max_iters=50)\n")
    tgt = tmp_path / 'tgt.py'
    tgt.write_text(
        f"_base_ = ['{ROOT}/configs/baselines/attnonly_tinyllava_tinysam_synthreason.py']\n"
        "train_dataloader = dict(batch_size=2)\n")
    out = tmp_path / 'cal.json'
    opts = [f'data_root={synth_root}', f'train_dataloader.dataset.data_root={synth_root}',
            f'model.mllm.pretrained={tiny_llava_dir}',
            'train_cfg.max_iters=1']  # the tool's own timing options must win over this
    r = subprocess.run([sys.executable, 'tools/analysis_tools/calibrate_iterations.py',
                        '--reference', str(ref), '--targets', str(tgt), '--iters', '2',
                        '--warmup', '1', '--out', str(out), '--cfg-options', *opts],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    ref_row, tgt_row = d['rows']
    assert ref_row['iters'] == 50 and ref_row['role'] == 'reference'
    assert d['budget_s'] == pytest.approx(50 * ref_row['s_per_iter'])
    assert tgt_row['iters'] == iterations_for(d['budget_s'], tgt_row['s_per_iter'])
    assert '| target |' in r.stdout


REF = ['configs/crseg/crseg_tinyllava_tinysam_align_synthreason.py',
       'configs/crseg/crseg_tinyllava_tinysam_synthreason.py']
TARGETS = [f'configs/baselines/{m}_tinyllava_tinysam_synthreason.py'
           for m in ('segtoken', 'segtoken_generate', 'boxpoint', 'attnonly')]
RECORD = 'configs/baselines/synthreason_calibration.json'


def _timings(*args):
    return subprocess.run([sys.executable, 'tools/analysis_tools/calibrate_iterations.py',
                           *args], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=300)


def test_the_record_gives_the_configured_budgets(tmp_path):
    """The table's baseline configs hold the iterations that the recorded timings give for the
    reference recipe as its configs are now: change the recipe and this says which to update."""
    out = tmp_path / 'cal.json'
    r = _timings('--reference', *REF, '--targets', *TARGETS, '--timings', RECORD,
                 '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    record = {row['config']: row['s_per_iter']
              for row in json.loads((ROOT / RECORD).read_text())['rows']}
    ref_rows, tgt_rows = d['rows'][:2], d['rows'][2:]
    assert d['budget_s'] == pytest.approx(sum(r['iters'] * record[r['config']]
                                              for r in ref_rows))
    for row in tgt_rows:
        assert row['s_per_iter'] == record[row['config']]  # reused, not timed again
        assert row['iters'] == row['configured'], row


def test_timings_without_a_config_name_it(tmp_path):
    rec = tmp_path / 'rec.json'
    rec.write_text(json.dumps(dict(rows=[dict(config=REF[0], s_per_iter=0.3)])))
    r = _timings('--reference', *REF, '--targets', TARGETS[0], '--timings', str(rec))
    assert r.returncode != 0
    assert 'no measured "s_per_iter"' in r.stderr and REF[1] in r.stderr
    bad = tmp_path / 'bad.json'
    bad.write_text('[1, 2]')
    r = _timings('--reference', *REF, '--targets', TARGETS[0], '--timings', str(bad))
    assert r.returncode != 0 and f'--timings {bad}: not a calibration record' in r.stderr
    for value in ('NaN', -0.5):  # a reference's bad time would give every target 10 iterations
        nan = tmp_path / 'nan.json'
        nan.write_text(json.dumps(dict(rows=[dict(config=c, s_per_iter=value)
                                             for c in REF + TARGETS[:1]])))
        r = _timings('--reference', *REF, '--targets', TARGETS[0], '--timings', str(nan))
        assert r.returncode != 0 and 'must be a finite number > 0' in r.stderr, r.stderr
