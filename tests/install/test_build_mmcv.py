"""tools/install/build_mmcv.sh: a broken tool chain stops with a message saying what to do."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'tools/install/build_mmcv.sh'


def _path_without_compilers(tmp_path):
    """A PATH holding the few tools the script needs before compiling, and no compiler."""
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    for tool in ('ls', 'dirname', 'basename', 'mktemp', 'rm', 'cat', 'nproc'):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    return str(bindir)


def test_no_compiler_is_named(tmp_path):
    env = dict(os.environ, PATH=_path_without_compilers(tmp_path),
               CRSEG_WHEEL_CACHE=str(tmp_path / 'cache'))
    r = subprocess.run(['/bin/bash', str(SCRIPT), sys.executable], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert 'no C++ compiler found' in r.stderr and 'apt-get install g++' in r.stderr
    assert not (tmp_path / 'cache').exists()


def test_python_without_torch_is_named(tmp_path):
    fake = tmp_path / 'python'
    fake.write_text('#!/bin/sh\nexit 1\n')
    fake.chmod(0o755)
    r = subprocess.run(['/bin/bash', str(SCRIPT), str(fake)], capture_output=True, text=True,
                       env=dict(os.environ, CRSEG_WHEEL_CACHE=str(tmp_path / 'cache')),
                       timeout=60)
    assert r.returncode == 1
    assert 'torch is not importable' in r.stderr


def test_cached_wheel_is_reused_without_building(tmp_path):
    import torch
    key = (f"mmcv2.1.0-torch{torch.__version__.split('+')[0]}-"
           f'py{sys.version_info[0]}{sys.version_info[1]}')
    cache = tmp_path / 'cache' / key
    cache.mkdir(parents=True)
    (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl').write_bytes(b'')
    r = subprocess.run(['/bin/bash', str(SCRIPT), sys.executable], capture_output=True,
                       text=True, env=dict(os.environ, CRSEG_WHEEL_CACHE=str(tmp_path / 'cache')),
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert 'using cached mmcv wheel' in r.stdout
