"""tools/install/uv_args.py: pip's configuration -> the uv options that install the same files,
and setup_venv.sh's installer switch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools/install'))
from uv_args import uv_args  # noqa: E402

STRATEGY = ['--index-strategy', 'unsafe-best-match']


def test_this_kind_of_machine():
    # `pip config list` as such a machine prints it: keys sorted, so `:env:` lines come first
    listing = "\n".join([
        ":env:.cert='/etc/ssl/certs/ca-certificates.crt'",
        ":env:.default-timeout='180'",
        ":env:.find-links='/opt/wheels'",
        "global.cert='/etc/ssl/certs/ca-certificates.crt'",
        "global.constraint='/etc/xdg/pip/constraints.txt'",
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'",
        "global.find-links='/opt/other'",
    ])
    assert uv_args(listing) == STRATEGY + [
        '--extra-index-url', 'file:///opt/pypi/simple',
        '--extra-index-url', 'file:///opt/pypi-more/simple',
        # the PIP_FIND_LINKS variable wins over the file, as in pip: /opt/other is not used
        '--find-links', '/opt/wheels',
        '--constraint', '/etc/xdg/pip/constraints.txt']


def test_precedence_env_over_install_over_global():
    listing = "\n".join(["global.index-url='https://g/simple'",
                         "install.index-url='https://i/simple'"])
    assert uv_args(listing) == STRATEGY + ['--index-url', 'https://i/simple']
    assert uv_args(listing + "\n:env:.index-url='https://e/simple'") == \
        STRATEGY + ['--index-url', 'https://e/simple']


def test_empty_config_and_no_index():
    assert uv_args('') == STRATEGY
    assert uv_args("global.no-index='true'") == STRATEGY + ['--no-index']
    assert uv_args("global.no-index='false'") == STRATEGY


def test_a_bad_line_is_named():
    with pytest.raises(ValueError, match=r"line 2: 'what is this'"):
        uv_args("global.find-links='/x'\nwhat is this")
    r = subprocess.run([sys.executable, str(ROOT / 'tools/install/uv_args.py')],
                       input='nonsense\n', capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "line 1: 'nonsense'" in r.stderr


def test_unknown_installer_is_refused_before_anything(tmp_path):
    venv = tmp_path / 'venv'
    r = subprocess.run(['/bin/bash', str(ROOT / 'tools/install/setup_venv.sh')],
                       env=dict(os.environ, CRSEG_INSTALLER='conda', VENV=str(venv)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "CRSEG_INSTALLER='conda': expected uv or pip" in r.stderr
    assert not venv.exists()
