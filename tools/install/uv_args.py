"""Print the uv options that make ``uv pip install`` see what ``pip install`` sees here.

uv reads neither pip.conf nor ``PIP_*`` variables, so ``tools/install/setup_venv.sh`` asks pip
for its settings (``python -m pip config list``, read on stdin) and passes their uv
equivalents, one argument per line. Each key takes its value from the scope pip itself would
use for ``pip install``: a ``PIP_*`` variable (``:env:``) over the config files' ``[install]``
section over their ``[global]`` section; a value of several entries is split on whitespace:

* ``index-url``       -> ``--index-url URL``;
* ``extra-index-url`` -> ``--extra-index-url URL`` per URL;
* ``find-links``      -> ``--find-links PATH`` per entry;
* ``constraint``      -> ``--constraint FILE`` per file (e.g. a machine's cap on torch);
* ``no-index``        -> ``--no-index`` when true.

``--index-strategy unsafe-best-match`` always comes first: like pip, take the best version
across every index, not the first index that has the package (uv's default). Other settings
(``cert``, ``timeout``, other sections) do not decide which files are installed and are left to
uv's defaults. A line that is not ``scope.key='value'`` is an error naming it.
"""
import re
import sys

LINE = re.compile(r"^(?P<scope>[^.\s]+)\.(?P<key>[a-z-]+)='(?P<value>.*)'$")
SCOPES = (':env:', 'install', 'global')  # pip's precedence for `pip install`, highest first
FLAGS = {'index-url': '--index-url', 'extra-index-url': '--extra-index-url',
         'find-links': '--find-links', 'constraint': '--constraint'}


def uv_args(listing: str) -> list:
    """uv arguments from the text of ``pip config list``."""
    found = {}  # key -> {scope: value}
    for n, raw in enumerate(listing.splitlines(), 1):
        if not raw.strip():
            continue
        m = LINE.match(raw.strip())
        if not m:
            raise ValueError(f"pip config list, line {n}: {raw!r} is not scope.key='value'")
        found.setdefault(m['key'], {})[m['scope']] = m['value']

    def value(key):
        scopes = found.get(key, {})
        return next((scopes[s] for s in SCOPES if s in scopes), None)

    out = ['--index-strategy', 'unsafe-best-match']
    for key, flag in FLAGS.items():
        for v in (value(key) or '').split():
            out += [flag, v]
    if (value('no-index') or '').lower() in ('1', 'true', 'yes', 'on'):
        out.append('--no-index')
    return out


def main() -> int:
    try:
        args = uv_args(sys.stdin.read())
    except ValueError as err:
        print(f'[crseg setup] ERROR: {err}', file=sys.stderr)
        return 2
    print('\n'.join(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
