"""tools/dist_train.sh and tools/dist_test.sh: the interpreter they start and the arguments
they hand to torchrun, checked with stand-in interpreters (no torchrun is started).

The scripts are copied into a fake repository whose ``.venv/bin/python`` prints what it got;
a ``python`` first on PATH fails. The scripts must use the repository's venv (as every other
README command does), ``PYTHON=`` must still win, and without a venv ``python`` on PATH is
used. ``dist_test.sh`` takes ``CONFIG NPROC [args]`` (no checkpoint) and ``CONFIG CHECKPOINT
NPROC [args]``: the 2nd argument is NPROC when it is a positive integer that is not an
existing file.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _stand_in(path: Path, tag: str, rc: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho {tag} "$@"\nexit {rc}\n')
    path.chmod(0o755)


@pytest.fixture
def fake(tmp_path):
    repo = tmp_path / 'repo'
    (repo / 'tools').mkdir(parents=True)
    for name in ('dist_train.sh', 'dist_test.sh'):
        shutil.copy(ROOT / 'tools' / name, repo / 'tools' / name)
    _stand_in(repo / '.venv/bin/python', 'VENV', 0)
    _stand_in(tmp_path / 'bin/python', 'PATH_PYTHON', 3)
    (tmp_path / 'iter_8.pth').write_bytes(b'x')
    return tmp_path


def _run(fake, script, *args, **env_over):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHON'}
    env.update(PATH=f"{fake / 'bin'}:/usr/bin:/bin", PORT='29999', **env_over)
    r = subprocess.run(['bash', str(fake / 'repo/tools' / script), *args], cwd=fake, env=env,
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout.split(), r.stderr


@pytest.mark.parametrize('script,tool', [('dist_train.sh', 'train.py'),
                                         ('dist_test.sh', 'test.py')])
def test_scripts_default_to_the_repository_venv(fake, script, tool):
    rc, out, err = _run(fake, script, 'c.py', '2')
    assert rc == 0, err
    assert out[0] == 'VENV' and out[1:3] == ['-m', 'torch.distributed.run'], out
    assert str(fake / 'repo/tools' / tool) in out and '--nproc_per_node=2' in out
    # PYTHON= still overrides (here: the failing one on PATH, whose exit status comes back)
    rc, out, _ = _run(fake, script, 'c.py', '2', PYTHON=str(fake / 'bin/python'))
    assert rc == 3 and out[0] == 'PATH_PYTHON'
    # no venv in the repository: python on PATH
    shutil.rmtree(fake / 'repo/.venv')
    rc, out, _ = _run(fake, script, 'c.py', '2')
    assert rc == 3 and out[0] == 'PATH_PYTHON'


def _test_py_args(out):
    """What dist_test.sh passes to tools/test.py (after the script's path)."""
    i = next(i for i, a in enumerate(out) if a.endswith('/tools/test.py'))
    nproc = next(a for a in out if a.startswith('--nproc_per_node='))
    return int(nproc.split('=')[1]), out[i + 1:]


def test_dist_test_with_and_without_checkpoint(fake):
    rc, out, err = _run(fake, 'dist_test.sh', 'c.py', '2', '--work-dir', 'w')
    assert rc == 0, err
    assert _test_py_args(out) == (2, ['c.py', '--launcher', 'pytorch', '--work-dir', 'w'])
    rc, out, err = _run(fake, 'dist_test.sh', 'c.py', 'iter_8.pth', '3', '--work-dir', 'w')
    assert rc == 0, err
    assert _test_py_args(out) == (3, ['c.py', 'iter_8.pth', '--launcher', 'pytorch',
                                      '--work-dir', 'w'])
    # a checkpoint path that does not exist is still a checkpoint (test.py names it)
    rc, out, err = _run(fake, 'dist_test.sh', 'c.py', 'missing.pth', '2')
    assert rc == 0 and _test_py_args(out) == (2, ['c.py', 'missing.pth', '--launcher',
                                                  'pytorch']), err
    # a checkpoint file named like a number is a checkpoint
    (fake / '4').write_bytes(b'x')
    rc, out, err = _run(fake, 'dist_test.sh', 'c.py', '4', '2')
    assert rc == 0 and _test_py_args(out) == (2, ['c.py', '4', '--launcher', 'pytorch']), err


@pytest.mark.parametrize('args,msg', [
    (['c.py', 'iter_8.pth'], "'iter_8.pth' is taken as CHECKPOINT"),
    (['c.py', 'iter_8.pth', 'two'], "NPROC must be a positive integer, got 'two'"),
    (['c.py', '0'], "'0' is taken as CHECKPOINT"),
])
def test_dist_test_bad_forms_are_named(fake, args, msg):
    rc, out, err = _run(fake, 'dist_test.sh', *args)
    assert rc != 0 and 'VENV' not in out
    assert msg in err and 'CONFIG [CHECKPOINT] NPROC' in err, err
