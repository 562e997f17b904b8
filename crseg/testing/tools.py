"""Load a script of ``tools/`` as a module (tests call its ``main`` / ``parse_args`` in-process)."""
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(rel_path: str, name: str = None, register: bool = False):
    """``tools/<rel_path>`` (relative to the repository root) as a fresh module named ``name``
    (default: the file's stem + ``'_tool'``); ``register`` puts it in ``sys.modules`` (needed
    when worker processes unpickle its functions)."""
    path = osp.join(ROOT, rel_path)
    spec = importlib.util.spec_from_file_location(
        name or osp.splitext(osp.basename(path))[0] + '_tool', path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
