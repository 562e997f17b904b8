"""The annotator with a crseg MLLM adapter as the teacher (tiny random-weight LLaVA, CPU).

A random-weight model never writes the three-line GLCoT format, so every reply is rejected by
the quality gate: this tests the adapter path's mechanics (prompting, batched greedy generation,
the gate on real model output, the listing of what was left out), not annotation quality. Such
a run annotates nothing, so the tool exits non-zero saying why (its report is still written).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crseg.annotation import AdapterTeacher, Reply

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'annotation'))
sys.path.insert(0, str(ROOT / 'tools' / 'dataset_converters'))
import glcot_annotate  # noqa: E402
from glcot_stub import free_port, make_reasonseg, read_lines  # noqa: E402


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_reasonseg(tmp_path_factory.mktemp('adapter'), n_plain=2)


def run(data, out, *teacher):
    """The tool's run, which annotates nothing (exit status 1, see above); its report."""
    with pytest.raises(SystemExit, match=r'nothing annotated: 11 item\(s\) handled this run, '
                                         r'none accepted') as exc:
        glcot_annotate.main([str(data), '--out', str(out), '--no-progress', '--device', 'cpu',
                             '--max-new-tokens', '6', '--retries', '1', *teacher])
    assert exc.value.code != 0
    return json.loads(out.with_name(out.stem + '.report.json').read_text())


@pytest.fixture(scope='module')
def single(tmp_path_factory, data, tiny_llava_dir):
    """One process, batch 1."""
    out = tmp_path_factory.mktemp('single') / 'b1.jsonl'
    return out, run(data, out, '--pretrained', tiny_llava_dir, '--family', 'llava',
                    '--batch-size', '1')


def test_adapter_teacher_batched_equals_unbatched(tmp_path, data, tiny_llava_dir, single):
    b1, r1 = single
    cfg = tmp_path / 'teacher.py'
    cfg.write_text(f"model = dict(mllm=dict(type='LlavaAdapter', pretrained='{tiny_llava_dir}'))\n")
    r4 = run(data, tmp_path / 'b4.jsonl', '--teacher-config', str(cfg), '--batch-size', '4')
    for report in (r1, r4):
        run_ = report['this_run']
        # 4 plain queries + empty target + blue cube + 3 scripted-case queries; 2 bad inputs
        assert run_['asked'] == 9 and run_['bad_input'] == 2 and run_['failed_requests'] == 0
        assert run_['requests'] == 18  # every reply rejected, so every item re-asked once
        assert sum(run_['rejected_by_reason'].values()) == 9 and run_['accepted'] == 0
    assert report['teacher'].startswith('LlavaAdapter:') and report['teacher'].endswith('.py')
    rej1 = read_lines(b1.with_name('b1.rejects.jsonl'))
    rej4 = read_lines(tmp_path / 'b4.rejects.jsonl')
    assert [r['kind'] for r in rej1].count('rejected') == 9
    # greedy generation: batch 4 (left-padded) gives the same replies as batch 1
    strip = [{k: v for k, v in r.items() if k != 'teacher'} for r in rej1]
    assert strip == [{k: v for k, v in r.items() if k != 'teacher'} for r in rej4]
    assert all(isinstance(r.get('response', ''), str) for r in rej1)
    assert read_lines(b1) == []


def test_adapter_teacher_under_torchrun(tmp_path, data, tiny_llava_dir, single):
    """2 processes (gloo, CPU), each its own adapter on a disjoint slice: same files."""
    b1, _ = single
    out = tmp_path / 'b1.jsonl'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')])
    r = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_addr', '127.0.0.1', '--master_port', str(free_port()),
         str(ROOT / 'tools' / 'dataset_converters' / 'glcot_annotate.py'), str(data),
         '--out', str(out), '--no-progress', '--device', 'cpu', '--max-new-tokens', '6',
         '--pretrained', tiny_llava_dir, '--family', 'llava', '--batch-size', '2'],
        env=env, capture_output=True, text=True, timeout=600)
    # rank 0 exits 1 (nothing annotated), so torchrun does
    assert r.returncode != 0 and 'glcot_annotate: nothing annotated' in r.stderr, \
        (r.stdout + r.stderr)[-4000:]
    assert out.read_bytes() == b1.read_bytes() == b''
    assert out.with_name('b1.rejects.jsonl').read_bytes() == \
        b1.with_name('b1.rejects.jsonl').read_bytes()


def test_adapter_batch_failure_is_isolated():
    class Boom:
        def eval(self):
            return self

        def generate(self, images, prompts, max_new_tokens):
            if any(p == 'bad' for p in prompts):
                raise RuntimeError('cannot encode')
            from crseg.models.mllms.base import GenerationResult
            return [GenerationResult(p.upper(), [], []) for p in prompts]

    teacher = AdapterTeacher(Boom(), batch_size=3)
    replies = teacher.ask([('a', None), ('bad', None), ('c', None), ('d', None)])
    assert replies[0] == Reply('A') and replies[2] == Reply('C') and replies[3] == Reply('D')
    assert replies[1].text is None and 'cannot encode' in replies[1].error


def test_inputs_follow_the_model_device():
    """Adapters build inputs on the CPU; the teacher moves them to the model's device."""
    import torch

    from crseg.models.mllms.base import GenerationResult, MLLMBatch

    class OnMeta:
        hf_model = torch.nn.Linear(2, 2, device='meta')
        seen = None

        def eval(self):
            return self

        def build_inputs(self, images, prompts):
            return MLLMBatch({'input_ids': torch.zeros(len(prompts), 3, dtype=torch.long)},
                             None, [], [])

        def generate(self, images, prompts, max_new_tokens):
            self.seen = self.build_inputs(images, prompts).model_inputs['input_ids'].device
            return [GenerationResult('x', [], []) for _ in prompts]

    adapter = OnMeta()
    AdapterTeacher(adapter, batch_size=2).ask([('p', None)])
    assert adapter.seen.type == 'meta'
