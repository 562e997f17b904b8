"""Annotator robustness: SIGKILL + restart, and 2-process (torchrun, gloo) sharding.

Both run the real CLI in subprocesses against the scripted HTTP teacher of
tests/annotation/glcot_stub.py (served from this process on 127.0.0.1), and compare with an
uninterrupted single-process run of the same command byte for byte. The teacher answers in
0.15 s ('slow' mode) so that a run can be killed half-way.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'annotation'))
from glcot_stub import StubServer, free_port, make_reasonseg, read_lines  # noqa: E402

TOOL = str(ROOT / 'tools' / 'dataset_converters' / 'glcot_annotate.py')


@pytest.fixture(scope='module')
def server():
    with StubServer() as s:
        yield s


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_reasonseg(tmp_path_factory.mktemp('annot'), n_plain=6)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, data, server):
    """An uninterrupted single-process run."""
    out = tmp_path_factory.mktemp('ref') / 'glcot.jsonl'
    r = subprocess.run(cmd(data, out, server), env=env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def env():
    e = dict(os.environ, OMP_NUM_THREADS='1')
    e['PYTHONPATH'] = os.pathsep.join([str(ROOT), e.get('PYTHONPATH', '')])
    return e


def cmd(data, out, server, mode='slow'):
    return [sys.executable, TOOL, str(data), '--out', str(out), '--api-base', server.url(mode),
            '--model', 'stub', '--concurrency', '1', '--backoff', '0.01']


def test_sigkill_then_restart_equals_uninterrupted_run(tmp_path, data, server, reference):
    out = tmp_path / 'glcot.jsonl'
    proc = subprocess.Popen(cmd(data, out, server), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count('\n') >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, 'the run ended before it could be killed: ' + \
        proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = out.read_text().count('\n')
    assert 3 <= done < len(read_lines(reference))
    # as if the kill had landed inside a write: a half line at the end
    with open(out, 'ab') as f:
        f.write(b'{"id": "img_05.jpg:0000", "image": "img_0')
    r = subprocess.run(cmd(data, out, server), env=env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'cut an unterminated last line' in r.stdout + r.stderr
    ids = [rec['id'] for rec in read_lines(out)]
    assert len(ids) == len(set(ids))
    assert out.read_bytes() == reference.read_bytes()
    rejects = out.with_name('glcot.rejects.jsonl')
    assert rejects.read_bytes() == reference.with_name('glcot.rejects.jsonl').read_bytes()


def test_torchrun_two_processes_merge_equals_single_process(tmp_path, data, server, reference):
    out = tmp_path / 'glcot.jsonl'
    args = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
            '--master_addr', '127.0.0.1', '--master_port', str(free_port())]
    r = subprocess.run(args + cmd(data, out, server)[1:] + ['--no-progress'], env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = r.stdout + r.stderr
    assert 'rank 0/2' in log and 'rank 1/2' in log
    assert out.read_bytes() == reference.read_bytes()
    assert out.with_name('glcot.rejects.jsonl').read_bytes() == \
        reference.with_name('glcot.rejects.jsonl').read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'glcot.jsonl', 'glcot.rejects.jsonl', 'glcot.report.json']
    import json
    report = json.loads(out.with_name('glcot.report.json').read_text())
    assert report['this_run']['processes'] == 2 and report['this_run']['asked'] == 17
