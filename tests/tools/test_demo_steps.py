"""tools/misc/demo_steps.py (the demo's data + tiny-model preparation, shared by tools/demo.sh
and tools/analysis_tools/zeroshot_heads_table.sh) and demo.sh's failure handling, without
running the demo: its training / test / demo commands are stubbed."""
import importlib.util
import json
import os
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, 'tools', 'misc', 'demo_steps.py')


def _tool():
    spec = importlib.util.spec_from_file_location('demo_steps', TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(*args, **kw):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, **kw)


def test_prepare_builds_the_demo_data_and_model_once(tmp_path):
    data, mllm = tmp_path / 'synth', tmp_path / 'models' / 'llava'
    r = _run('prepare', '--data', data, '--mllm', mllm, '--num-train', 3, '--num-val', 2,
             '--workers', 1)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (data / '.complete').is_file()
    assert len(list((data / 'train').glob('*.jpg'))) == 3
    assert len(list((data / 'val').glob('*.jpg'))) == 2
    # the model demo.sh built before this tool existed: the same corpus and sizes
    from crseg.glcot import GLCOT_INSTRUCTION, PLAIN_INSTRUCTION
    from crseg.testing import build_tiny_llava
    from crseg.testing.corpus import load_corpus
    texts = load_corpus(str(data / 'train')) + [GLCOT_INSTRUCTION, PLAIN_INSTRUCTION] * 50
    ref = build_tiny_llava(str(tmp_path / 'ref'), texts, image_size=160, patch=16,
                           vocab_size=1024, seed=0)
    from transformers import AutoTokenizer, LlavaForConditionalGeneration
    got_tok, ref_tok = (AutoTokenizer.from_pretrained(str(p)) for p in (mllm, ref))
    assert got_tok.get_vocab() == ref_tok.get_vocab()
    got, want = (LlavaForConditionalGeneration.from_pretrained(str(p)) for p in (mllm, ref))
    assert got.config.vision_config.image_size == 160
    assert got.config.vision_config.patch_size == 16
    for (k, a), (_, b) in zip(got.state_dict().items(), want.state_dict().items()):
        assert torch.equal(a, b), k
    # a second run reuses both (nothing rewritten)
    stamp = ((data / '.complete').stat().st_mtime_ns, (mllm / 'model.safetensors').stat()
             .st_mtime_ns)
    r = _run('prepare', '--data', data, '--mllm', mllm, '--num-train', 3, '--num-val', 2)
    assert r.returncode == 0 and 'generating' not in r.stdout and 'building' not in r.stdout
    assert stamp == ((data / '.complete').stat().st_mtime_ns,
                     (mllm / 'model.safetensors').stat().st_mtime_ns)


def test_failing_steps_exit_non_zero_naming_what(tmp_path):
    r = _run('query', tmp_path)
    assert r.returncode == 1 and f'no .jpg image in {tmp_path}' in r.stderr
    log = tmp_path / 'test.log'
    log.write_text('Traceback ...\nRuntimeError: boom\n')
    r = _run('metrics', log)
    assert r.returncode == 1 and f'no test metrics found in {log}' in r.stderr
    not_a_dir = tmp_path / 'file'
    not_a_dir.write_text('x')
    r = _run('prepare', '--data', not_a_dir, '--mllm', tmp_path / 'm', '--num-train', 1,
             '--num-val', 1, '--workers', 1)
    assert r.returncode == 1 and 'CalledProcessError' in r.stderr


def test_metrics_and_query(tmp_path):
    log = tmp_path / 'test.log'
    log.write_text('Iter(test) [2/2] gIoU: 1.0  cIoU: 2.0\n'
                   'Iter(test) [4/4] gIoU: 12.5000  cIoU: 10.2500  gIoU_short: 3.0  '
                   'num_samples: 4  time: 0.5\n')
    assert _tool().metrics_table(str(log)).splitlines() == [
        '| metric | value |', '|---|---|', '| gIoU | 12.5000 |', '| cIoU | 10.2500 |',
        '| gIoU_short | 3.0 |', '| num_samples | 4 |']
    _fake_split(tmp_path / 'val')
    r = _run('query', tmp_path / 'val')
    assert r.stdout.rstrip('\n') == f"{tmp_path / 'val' / 'a.jpg'}\tthe red circle"


def _fake_split(folder):
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / 'a.jpg'), np.zeros((8, 8, 3), np.uint8))
    (folder / 'a.json').write_text(json.dumps({'text': ['the red circle', 'b']}))
    cv2.imwrite(str(folder / 'b.jpg'), np.zeros((8, 8, 3), np.uint8))


STUB = """#!/usr/bin/env bash
# stands in for python: train / test / demo are faked, demo_steps.py runs for real
case "$1" in
  tools/train.py)
    while [ "$1" != --work-dir ]; do shift; done
    mkdir -p "$2"; printf '%s' "$2/iter_1.pth" > "$2/last_checkpoint" ;;
  tools/test.py) echo "Iter(test) [2/2]  gIoU: 12.5000  cIoU: 10.0000  num_samples: 2" ;;
  tools/demo.py)
    if [ -n "${STUB_DEMO_FAILS:-}" ]; then echo 'demo: boom' >&2; exit 3; fi
    printf 'response: x\\nanswer: y\\nmask pixels: 3\\n' ;;
  *) exec PYTHON "$@" ;;
esac
"""


@pytest.mark.parametrize('demo_fails', [False, True])
def test_demo_sh_stops_on_a_failing_step(tmp_path, demo_fails):
    stub = tmp_path / 'py'
    stub.write_text(STUB.replace('PYTHON', sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    data, mllm = tmp_path / 'data', tmp_path / 'mllm'
    _fake_split(data / 'val')
    (data / '.complete').write_text('')
    mllm.mkdir()
    (mllm / 'model.safetensors').write_text('')  # present: prepare builds nothing
    env = dict(os.environ, PY=str(stub), DEMO_DATA=str(data), DEMO_MLLM=str(mllm),
               DEMO_WORK=str(tmp_path / 'work'))
    if demo_fails:
        env['STUB_DEMO_FAILS'] = '1'
    r = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'demo.sh')], env=env,
                       capture_output=True, text=True)
    if demo_fails:
        assert r.returncode != 0
        assert 'FAILED: tools/demo.py' in r.stderr and 'demo: boom' in r.stderr
        assert '| gIoU |' not in r.stdout
    else:
        assert r.returncode == 0, r.stderr[-2000:]
        assert '| gIoU | 12.5000 |' in r.stdout and 'answer: y' in r.stdout
        assert "README's recorded run: gIoU " in r.stdout
        assert 'this run: gIoU 12.5 / cIoU 10.0' in r.stdout
        assert f"tools/demo.py on {data / 'val' / 'a.jpg'}: \"the red circle\"" in r.stdout


def test_reference_line_compares_with_the_readme_marker(tmp_path):
    log, readme = tmp_path / 'test.log', tmp_path / 'README.md'
    log.write_text('Iter(test) [200/200]  gIoU: 41.5000  cIoU: 38.0000  num_samples: 200\n')
    readme.write_text('text\n<!-- demo-reference: gIoU=44.0 cIoU=37.2 -->\n')
    assert _tool().reference_line(str(log), str(readme)) == (
        "README's recorded run: gIoU 44.0 / cIoU 37.2; this run: gIoU 41.5 / cIoU 38.0 "
        '(-2.5 / +0.8)')
    readme.write_text('no marker')
    r = _run('metrics', log, '--reference', readme)
    assert r.returncode == 1 and 'no "<!-- demo-reference' in r.stderr


def test_the_readme_carries_the_reference_marker():
    text = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    assert _tool().REFERENCE_RE.search(text)


@pytest.mark.parametrize('args,message', [
    (['--align-iters', '0'], 'DEMO_ALIGN_ITERS=\'0\': expected a whole number >= 1'),
    (['--main-iters', 'ten'], "DEMO_MAIN_ITERS='ten': expected a whole number >= 1"),
    (['--num-val', '2.5'], "DEMO_NUM_VAL='2.5': expected a whole number >= 1"),
    (['--threads', 'all'], "DEMO_THREADS='all': expected a whole number >= 1"),
    (['--seed', '-1'], "DEMO_SEED='-1': expected a whole number >= 0"),
    (['--data', '/no/such/folder/synth'], 'its folder /no/such/folder does not exist'),
])
def test_check_refuses_senseless_overrides(tmp_path, args, message):
    base = ['--data', str(tmp_path / 'data'), '--num-train', '20', '--num-val', '4']
    r = _run('check', *base, *args)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert _run('check', *base).returncode == 0


def test_demo_sh_checks_overrides_before_any_work(tmp_path):
    env = dict(os.environ, DEMO_MAIN_ITERS='0', DEMO_DATA=str(tmp_path / 'data'),
               PY=sys.executable)
    r = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'demo.sh')], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'DEMO_MAIN_ITERS' in r.stderr
    assert not (tmp_path / 'data').exists()  # nothing generated


def test_both_scripts_share_the_preparation():
    for script in ('tools/demo.sh', 'tools/analysis_tools/zeroshot_heads_table.sh'):
        with open(os.path.join(ROOT, script)) as f:
            text = f.read()
        assert 'tools/misc/demo_steps.py prepare' in text, script
        assert 'build_tiny_llava' not in text and 'dataset_converters' not in text, script
    with open(os.path.join(ROOT, 'tools', 'demo.sh')) as f:
        demo = f.read()
    assert '|| true' not in demo and "<<'PYEOF'" not in demo and '$PY -c' not in demo


def test_demo_sh_default_data_folder_in_a_fresh_clone(tmp_path):
    """A fresh clone has no data/: the default DEMO_DATA must pass the check (its parent is
    made), and the run goes on to the preparation step (stubbed here)."""
    clone = tmp_path / 'clone'
    (clone / 'tools' / 'misc').mkdir(parents=True)
    for rel in ('tools/demo.sh', 'tools/misc/demo_steps.py'):
        (clone / rel).write_text(open(os.path.join(ROOT, rel)).read())
    stub = tmp_path / 'py'
    stub.write_text('#!/usr/bin/env bash\n'
                    'if [ "$1 $2" = "tools/misc/demo_steps.py prepare" ]; then\n'
                    '  echo "stub: prepare reached"; exit 7; fi\n'
                    f'exec {sys.executable} "$@"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith('DEMO_')}
    r = subprocess.run(['bash', str(clone / 'tools' / 'demo.sh')], env=dict(env, PY=str(stub)),
                       capture_output=True, text=True, timeout=120)
    assert 'stub: prepare reached' in r.stdout, r.stderr[-2000:]
    assert r.returncode == 7 and (clone / 'data').is_dir()
