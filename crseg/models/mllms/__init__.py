"""MLLM adapters (one file per family) and the offline tiny-model builder."""
from .base import BaseMLLMAdapter, GenerationResult, ImageTokenLayout, MLLMBatch
from .llava import LlavaAdapter
from .offline_processor import build_tiny_llava, build_tiny_qwen2vl, train_bpe_tokenizer
from .qwen2_vl import Qwen2VLAdapter

__all__ = ['BaseMLLMAdapter', 'GenerationResult', 'ImageTokenLayout', 'MLLMBatch',
           'LlavaAdapter', 'Qwen2VLAdapter', 'build_tiny_llava', 'build_tiny_qwen2vl',
           'train_bpe_tokenizer']
