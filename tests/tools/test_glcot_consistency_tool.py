"""tools/analysis_tools/glcot_consistency.py on four tiny samples."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_consistency_summary_on_four_samples(tmp_path, synth_root, tiny_llava_dir,
                                             tiny_sam_arch):
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(
        f"_base_ = ['{ROOT}/configs/crseg/crseg_tinyllava_tinysam_synthreason.py']\n"
        f"model = dict(mllm=dict(pretrained='{tiny_llava_dir}', max_new_tokens=24), "
        f"refiner=dict(arch={tiny_sam_arch!r}))\n"
        f"test_dataloader = dict(batch_size=2, dataset=dict(data_root='{synth_root}'))\n")
    out, rows = tmp_path / 'summary.json', tmp_path / 'rows.jsonl'
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, 'tools/analysis_tools/glcot_consistency.py', str(cfg),
                        'none', '--limit', '4', '--out', str(out),
                        '--rows', str(rows)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s['num_samples'] == 4
    # the per-sample IoU it computes averages to the metric's gIoU (LISA protocol)
    assert abs(s['gIoU'] - s['metrics']['gIoU']) < 1e-6
    for key in ('answer_not_in_region', 'maps_disagree'):
        share = s[key]['share']
        assert abs(share * 4 - s['metrics'][f'n_{key}']) < 1e-9
        groups = [g for g in (s[key]['gIoU_if_1'], s[key]['gIoU_if_0']) if g is not None]
        assert groups and all(0 <= g <= 100 for g in groups)
    if s['with_region_map']:
        assert -1 <= s['pearson_q1'] <= s['pearson_median'] <= s['pearson_q3'] <= 1
    # reasoning accuracy: every sample counted once under 'all' and once under its type
    rs = s['reasoning']
    assert rs['all']['n'] == 4
    assert sum(v['n'] for k, v in rs.items() if k != 'all') == 4
    for v in rs.values():
        assert 0 <= v['answer_acc'] <= 100 and 0 <= v['scene_acc'] <= 100
        assert 0 <= v['scene_item_f1'] <= 100
    # --rows: one JSON line per sample, whose IoUs average to the same gIoU
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    assert len(lines) == 4
    assert abs(100 * sum(r['iou'] for r in lines) / 4 - s['gIoU']) < 1e-6
    for r in lines:
        assert r['query_type'] and isinstance(r['text'], str) and set(r['gt']) >= {'global'}


def test_reasoning_scores_against_the_glcot_target():
    """Written from the rules in the docstring: case, spacing and a final full stop ignored."""
    sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))
    from glcot_consistency import reasoning
    gt = {'global': '2 objects: red star top; blue circle left.', 'local': 'x',
          'answer': 'the red star'}
    rows = [dict(gt=gt, query_type='attribute', iou=1.0, answer='The red  star.',
                 text='scene: 2 objects: red star top; blue circle left.\nregion: x\n'
                      'answer: The red  star.'),
            dict(gt=gt, query_type='negation', iou=0.0, answer='the blue circle',
                 text='scene: 1 objects: blue circle left.\nregion: x\nanswer: the blue circle'),
            dict(gt=None, query_type='attribute', iou=0.5, answer='a', text='a')]
    out = reasoning(rows)
    # scene items: 2 of 2 right, then 1 item ("blue circle left") of 1 predicted, 2 in the target
    assert out['all'] == dict(n=2, answer_acc=50.0, scene_acc=50.0, scene_item_f1=100 * 6 / 7,
                              gIoU_answer_right=100.0, gIoU_answer_wrong=0.0)
    assert out['attribute']['answer_acc'] == 100.0 and out['negation']['answer_acc'] == 0.0
    assert out['negation']['gIoU_answer_right'] is None


def test_an_output_in_a_missing_folder_is_refused_before_the_run(tmp_path):
    for flag in ('--out', '--rows'):
        bad = tmp_path / 'nowhere' / 'x.json'
        r = subprocess.run([sys.executable, 'tools/analysis_tools/glcot_consistency.py',
                            'configs/crseg/crseg_tinyllava_tinysam_synthreason.py', 'none', flag,
                            str(bad)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr[-2000:]
        assert f'{flag} {bad}: its folder does not exist' in r.stderr
