"""``--cfg-options`` for the tools: items checked, top-level variables that reach their uses.

mmengine's ``DictAction`` fails on an item without ``=`` with a bare unpacking error; and a
top-level variable such as ``data_root`` has already been copied into the dataloaders when
the config is read, so overriding it alone changes nothing but the variable. Here:

* :class:`CfgOptionsAction`: an item without ``=`` is a usage error naming the item;
* :func:`merge_cfg_options`: for an overridden top-level *string* variable (``data_root``,
  ``tiny_mllm_path``, ...), every field that holds exactly its old value gets the new one too
  (logged), unless that field is overridden explicitly; a field *built from* it (a path that
  starts with ``<old>/``) cannot be redone, so the override is refused with the keys to set.
  For other top-level values (numbers, ...) the fields that hold the same value are only
  named in a warning (an equal number may be a coincidence).
"""
import logging
from typing import Any, Dict, Iterator, List, Tuple

from mmengine.config import Config, DictAction
from mmengine.logging import print_log


class CfgOptionsAction(DictAction):
    """``DictAction`` whose items must be ``key=value`` (an error names the bad item)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for kv in values:
            if '=' not in kv:
                parser.error(f'{option_string} item {kv!r} has no "=": write key=value, '
                             'e.g. train_cfg.max_iters=100')
            if not kv.split('=', 1)[0]:
                parser.error(f'{option_string} item {kv!r} has an empty key')
        super().__call__(parser, namespace, values, option_string)


def _walk(node: Any, path: str = '') -> Iterator[Tuple[str, Any]]:
    """(dotted path, leaf value) of every leaf under dicts and lists."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f'{path}.{k}' if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f'{path}.{i}')
    else:
        yield path, node


def _is_path(value: str) -> bool:
    return '/' in value or '\\' in value


def merge_cfg_options(cfg: Config, options: Dict[str, Any]) -> Config:
    """Merge ``options`` into ``cfg`` (see the module docstring); returns ``cfg``."""
    options = dict(options or {})
    explicit = set(options)
    extra: Dict[str, Any] = {}
    refused: List[str] = []
    leaves = list(_walk(cfg._cfg_dict.to_dict()))
    for key, new in list(options.items()):
        if '.' in key or key not in cfg._cfg_dict:
            continue
        old = cfg[key]
        if isinstance(old, (dict, list)) or old is None or old == new:
            continue
        same = [p for p, v in leaves if p != key and not p.startswith(key + '.')
                and type(v) is type(old) and v == old and p not in explicit]
        if isinstance(old, str):
            built = [p for p, v in leaves if isinstance(v, str) and _is_path(old)
                     and v.startswith(old.rstrip('/') + '/') and p not in explicit]
            refused += [f'{p} (= {v!r})' for p, v in leaves if p in built]
            for p in same:
                extra[p] = new
            if same:
                print_log(f'--cfg-options {key}={new} also sets {", ".join(same)} (they held '
                          f'its old value {old!r})', logger='current')
        elif same:
            print_log(f'--cfg-options {key}={new} sets only the variable {key}; these fields '
                      f'held the same value {old!r} and keep it: {", ".join(same)} (set them '
                      'explicitly if they derive from it)', logger='current',
                      level=logging.WARNING)
    if refused:
        names = [k for k in options if '.' not in k and k in cfg._cfg_dict]
        raise ValueError(f'--cfg-options {", ".join(names)}: the config already built these '
                         f'fields from the old value, which would keep it: '
                         f'{"; ".join(refused)}. Override them explicitly (e.g. '
                         f'--cfg-options {refused[0].split(" ")[0]}=...)')
    cfg.merge_from_dict({**extra, **options})
    return cfg
