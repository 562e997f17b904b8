"""MLLM adapters, one file per family (tiny test models: :mod:`crseg.testing`)."""
from .base import BaseMLLMAdapter, GenerationResult, ImageTokenLayout, MLLMBatch
from .internvl import InternVLAdapter
from .llava import LlavaAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .qwen2_vl import Qwen2VLAdapter
from .qwen3_vl import Qwen3VLAdapter

__all__ = ['BaseMLLMAdapter', 'GenerationResult', 'ImageTokenLayout', 'MLLMBatch',
           'LlavaAdapter', 'Qwen2VLAdapter', 'Qwen3VLAdapter', 'InternVLAdapter',
           'LlavaOnevisionAdapter']
