"""LoRA helpers: find the HF model inside a crseg model, merge its LoRA layers into the base
weights (peft), count LoRA parameters.

The MLLM adapters inject LoRA with ``peft.inject_adapter_in_model`` (no ``PeftModel``
around the HF model), so :func:`merge_lora_` handles both cases: a ``PeftModel``
(``merge_and_unload``) and bare peft tuner layers (``merge()`` each, then put its base layer
back in its parent's place).
"""
from typing import Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log


def _is_tuner_layer(module: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer
    return isinstance(module, BaseTunerLayer)


def count_lora_layers(model: nn.Module) -> int:
    """Number of peft tuner (LoRA) layers inside ``model``."""
    return sum(_is_tuner_layer(m) for m in model.modules())


def find_hf_model(model: nn.Module) -> Tuple[nn.Module, Optional[object]]:
    """The HF (or peft) model held by ``model`` and its processor (or ``None``).

    Looks for, in order: ``model`` itself when it has ``save_pretrained``; the first module
    (depth-first) with an ``hf_model`` attribute (crseg MLLM adapters); the first submodule
    with ``save_pretrained``. The processor is the owner's ``processor`` attribute (falling
    back to ``tokenizer``).
    """
    if hasattr(model, 'save_pretrained'):
        return model, None
    for owner in model.modules():
        hf = getattr(owner, 'hf_model', None)
        if isinstance(hf, nn.Module):
            proc = getattr(owner, 'processor', None) or getattr(owner, 'tokenizer', None)
            return hf, proc
    for name, sub in model.named_modules():
        if hasattr(sub, 'save_pretrained'):
            return sub, None
    raise ValueError(f'{type(model).__name__} holds no HF model (no module with an `hf_model` '
                     'attribute or a `save_pretrained` method)')


def _set_child(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition('.')
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def merge_lora_(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` into its base weights and remove the LoRA layers.

    Returns the merged model (a new object for a ``PeftModel``: its base model; ``model``
    itself otherwise, modified in place). Raises ``ValueError`` when there is nothing to merge.
    """
    from peft import PeftModel
    if isinstance(model, PeftModel):
        return model.merge_and_unload(safe_merge=True)
    layers = [(n, m) for n, m in model.named_modules() if _is_tuner_layer(m)]
    if not layers:
        raise ValueError(f'{type(model).__name__} has no LoRA (peft tuner) layers to merge')
    # innermost first, so a parent's replacement never hides a child still to merge
    for name, layer in sorted(layers, key=lambda x: -x[0].count('.')):
        layer.merge(safe_merge=True)
        _set_child(model, name, layer.get_base_layer())
    if hasattr(model, 'peft_config'):
        del model.peft_config
    print_log(f'merged {len(layers)} LoRA layers into {type(model).__name__}', logger='current')
    return model
