"""Import layers of the crseg package, read from the source with ``ast`` (nothing is imported).

(a) ``crseg.utils`` is the bottom layer: its modules import nothing of crseg outside
    ``crseg.utils`` (not even ``crseg.registry``);
(b) ``crseg.analysis`` (what the tools measure, calibrate, plan and tabulate with) sits above
    the runtime: no module of crseg outside ``crseg/analysis`` and ``crseg/testing`` imports it.

Every import counts, including those inside functions, and ``importlib.import_module`` /
``__import__`` calls with a literal module name.
"""
import ast
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'crseg'
BOTTOM = ('crseg.utils', )  # what crseg.utils may import of crseg
ABOVE_RUNTIME = ('crseg.analysis', 'crseg.testing')  # not runtime: may import crseg.analysis


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + '.') for p in prefixes)


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def imports_of(path: Path, package: Path) -> Iterator[Tuple[int, str]]:
    """(line, imported name) for every import in ``path``; ``from M import n`` gives ``M.n``
    (``n`` may be a submodule), relative imports resolved against the module's package."""
    name = module_name(path, package)
    pkg = name if path.name == '__init__.py' else name.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = pkg.split('.')
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            for alias in node.names:
                yield node.lineno, base if alias.name == '*' else f'{base}.{alias.name}'
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
            if called in ('import_module', '__import__'):
                yield node.lineno, node.args[0].value


Violation = Tuple[str, str, int, str]  # (module, file, line, imported name)


def layer_violations(package: Path = PACKAGE) -> Tuple[List[Violation], List[Violation], int]:
    """(violations of (a), violations of (b), number of modules read) under ``package``."""
    utils, analysis, n = [], [], 0
    for path in sorted(package.rglob('*.py')):
        if '__pycache__' in path.parts:
            continue
        n += 1
        mod = module_name(path, package)
        rel = str(path.relative_to(package.parent))
        for line, imported in imports_of(path, package):
            if not _within(imported, ('crseg', )):
                continue
            if _within(mod, ('crseg.utils', )) and not _within(imported, BOTTOM):
                utils.append((mod, rel, line, imported))
            if not _within(mod, ABOVE_RUNTIME) and _within(imported, ('crseg.analysis', )):
                analysis.append((mod, rel, line, imported))
    return utils, analysis, n


def report(violations: List[Violation], rule: str) -> str:
    return '\n'.join(f'{mod} ({rel}:{line}) imports {imported}: {rule}'
                     for mod, rel, line, imported in violations)


def test_utils_imports_nothing_of_crseg_above_it():
    utils, _, n = layer_violations()
    assert n > 50 and (PACKAGE / 'utils' / '__init__.py').is_file()  # the package was read
    assert not utils, report(utils, f'crseg.utils may import only {BOTTOM} of crseg')


def test_runtime_never_imports_analysis():
    _, analysis, _ = layer_violations()
    assert (PACKAGE / 'analysis' / '__init__.py').is_file()
    assert not analysis, report(analysis, 'the runtime never imports crseg.analysis')


def test_the_checker_finds_each_kind_of_import(tmp_path):
    """A made-up package with one violation of each form: every one is reported, by name."""
    pkg = tmp_path / 'crseg'
    files = {
        '__init__.py': '',
        'registry.py': '',
        'utils/__init__.py': 'from .lora import x\nfrom . import tool_utils\n',
        'utils/lora.py': 'import crseg.utils.tool_utils\n',
        'utils/tool_utils.py': 'def f():\n    from crseg.engine.strategies import A\n',
        'utils/up.py': ('from ..registry import MODELS\nfrom crseg import models\n'
                        'import importlib\nimportlib.import_module("crseg.datasets")\n'),
        'analysis/__init__.py': '',
        'analysis/memory.py': 'from crseg.engine import x\n',
        'testing/__init__.py': 'from crseg.analysis import memory\n',
        'models/__init__.py': 'def f():\n    from ..analysis.memory import y\n',
        'models/eap/capture.py': 'import crseg.analysis\n',
        'apis.py': 'from crseg import analysis\n',
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    utils, analysis, n = layer_violations(pkg)
    assert n == len(files)
    assert [(m, line, i) for m, _, line, i in utils] == [
        ('crseg.utils.tool_utils', 2, 'crseg.engine.strategies.A'),
        ('crseg.utils.up', 1, 'crseg.registry.MODELS'),
        ('crseg.utils.up', 2, 'crseg.models'),
        ('crseg.utils.up', 4, 'crseg.datasets')]
    assert sorted((m, i) for m, _, _, i in analysis) == [
        ('crseg.apis', 'crseg.analysis'),
        ('crseg.models', 'crseg.analysis.memory.y'),
        ('crseg.models.eap.capture', 'crseg.analysis')]
    assert report(utils[:1], 'r') == ('crseg.utils.tool_utils (crseg/utils/tool_utils.py:2) '
                                      'imports crseg.engine.strategies.A: r')


@pytest.mark.parametrize('rel', ['utils/__init__.py', 'analysis/__init__.py'])
def test_module_names(rel):
    assert module_name(PACKAGE / rel, PACKAGE) == 'crseg.' + rel.split('/')[0]
