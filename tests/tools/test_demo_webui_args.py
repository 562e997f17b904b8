"""tools/demo.py and tools/webui.py: --device defaults to cuda when available (issue 27 item 4).

In-process: the tools' ``parse_args`` are called directly (no subprocess, no model)."""
import pytest
import torch

from crseg.testing.tools import load_tool


def load_cli(name):
    return load_tool(f'tools/{name}.py', f'{name}_tool_args')


ARGV = {'demo': ['img.jpg', 'the cat', '--config', 'cfg.py'], 'webui': ['cfg.py']}


@pytest.mark.parametrize('tool', ['demo', 'webui'])
def test_device_defaults_to_cuda_when_available(tool, monkeypatch):
    parse = load_cli(tool).parse_args
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert parse(ARGV[tool]).device == 'cpu'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert parse(ARGV[tool]).device == 'cuda'
    assert parse(ARGV[tool] + ['--device', 'cpu']).device == 'cpu'  # an explicit choice wins
    assert parse(ARGV[tool] + ['--device', 'cuda:1']).device == 'cuda:1'


def test_inferencer_device_default_is_the_same_rule(monkeypatch):
    from crseg.apis import default_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert default_device() == 'cuda'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert default_device() == 'cpu'
