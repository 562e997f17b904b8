"""Test and demo helpers: tiny random-weight models built through the real classes.

Not imported by the runtime package (``crseg.models`` never imports this); tests, the demo
script and ``tools/misc/make_tiny_mllm.py`` use it to build offline tokenizers, processors
and models without any hub access.
"""
from .tiny_internvl import build_tiny_internvl
from .tiny_llava_onevision import build_tiny_llava_onevision
from .tiny_mllm import build_tiny_llava, build_tiny_qwen2vl, train_bpe_tokenizer
from .tiny_qwen3vl import build_tiny_qwen3vl

__all__ = ['build_tiny_llava', 'build_tiny_qwen2vl', 'train_bpe_tokenizer', 'build_tiny_qwen3vl',
           'build_tiny_internvl', 'build_tiny_llava_onevision']
