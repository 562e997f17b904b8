"""Teachers: something that answers (prompt, image) requests with text.

* :class:`AdapterTeacher` - any crseg MLLM adapter (``LlavaAdapter``, ``Qwen2VLAdapter``, ...),
  batched greedy generation through the adapter's own ``generate``.
* :class:`OpenAITeacher` - an OpenAI-compatible chat-completions endpoint (``vllm serve``,
  ...) through the ``openai`` client: images as base64 data URLs, ``concurrency`` requests in
  flight, a timeout per request, retries with exponential back-off on connection errors,
  timeouts, HTTP 408/409/429/5xx and malformed replies (a body that is not a chat completion,
  or not JSON at all though labelled ``application/json``).

``ask`` returns one :class:`Reply` per request, in order: the text, or why there is none. A
teacher never raises for one bad request; the annotator records it as a failed request.
"""
import base64
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.logging import print_log

Request = Tuple[str, np.ndarray]  # (user text, RGB uint8 image)
FAMILIES = {'llava': 'LlavaAdapter', 'qwen2_vl': 'Qwen2VLAdapter'}
RETRY_STATUS = (408, 409, 429)


@dataclass
class Reply:
    text: Optional[str] = None
    error: Optional[str] = None


class AdapterTeacher:
    """Batched greedy generation with a crseg MLLM adapter (a built ``BaseMLLMAdapter``)."""

    def __init__(self, adapter, batch_size: int = 8, max_new_tokens: int = 160,
                 name: str = 'adapter'):
        if batch_size < 1:
            raise ValueError(f'AdapterTeacher: batch_size must be >= 1, got {batch_size}')
        self.adapter = adapter.eval()
        self.batch_size, self.max_new_tokens, self.name = batch_size, max_new_tokens, name
        self.parallelism = batch_size
        self._on_device(adapter)

    @staticmethod
    def _on_device(adapter) -> None:
        """Move the adapter's model inputs to its model's device (they are built on the CPU)."""
        hf_model = getattr(adapter, 'hf_model', None)
        device = next(hf_model.parameters()).device if hf_model is not None else None
        if device is None or device.type == 'cpu':
            return
        build = adapter.build_inputs

        def build_on_device(*args, **kwargs):
            batch = build(*args, **kwargs)
            batch.model_inputs = {k: v.to(device) if hasattr(v, 'to') else v
                                  for k, v in batch.model_inputs.items()}
            return batch

        adapter.build_inputs = build_on_device

    def ask(self, requests: Sequence[Request]) -> List[Reply]:
        replies = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            try:
                replies += self._generate(batch)
            except Exception as e:  # isolate the sample that broke the batch
                if len(batch) == 1:
                    replies.append(Reply(error=f'generation failed: {type(e).__name__}: {e}'))
                    continue
                for req in batch:
                    replies += self.ask([req])
        return replies

    def _generate(self, batch: Sequence[Request]) -> List[Reply]:
        prompts, images = [r[0] for r in batch], [r[1] for r in batch]
        results = self.adapter.generate(images, prompts, max_new_tokens=self.max_new_tokens)
        return [Reply(text=r.text) for r in results]


def build_adapter_teacher(teacher_config: Optional[str] = None, pretrained: Optional[str] = None,
                          family: Optional[str] = None, checkpoint: Optional[str] = None,
                          device: Optional[str] = None, torch_dtype: Optional[str] = None,
                          batch_size: int = 8, max_new_tokens: int = 160) -> AdapterTeacher:
    """An adapter from a config's ``model.mllm`` or from ``pretrained`` + ``family``.

    ``checkpoint``: a crseg training checkpoint whose ``mllm.*`` weights are loaded on top
    (``weights_only=True``).
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from crseg.models.mllms.base import BaseMLLMAdapter
    from crseg.registry import MODELS
    init_default_scope('crseg')
    if (teacher_config is None) == (pretrained is None):
        raise ValueError('adapter teacher: give exactly one of --teacher-config and --pretrained')
    if teacher_config is not None:
        cfg = Config.fromfile(teacher_config)
        mllm = cfg.get('model', {}).get('mllm')
        if not mllm:
            raise ValueError(f'--teacher-config {teacher_config}: no model.mllm in the config')
        mllm = dict(mllm)
        name = f'{mllm.get("type")}:{teacher_config}'
    else:
        if family not in FAMILIES:
            raise ValueError(f'--family must be one of {sorted(FAMILIES)}, got {family!r}')
        mllm = dict(type=FAMILIES[family], pretrained=pretrained)
        name = f'{FAMILIES[family]}:{pretrained}'
    if torch_dtype:
        mllm['torch_dtype'] = torch_dtype
    adapter = MODELS.build(mllm)
    if not isinstance(adapter, BaseMLLMAdapter):
        raise TypeError(f'adapter teacher: {mllm.get("type")} is not an MLLM adapter')
    if checkpoint:
        state = torch.load(checkpoint, map_location='cpu', weights_only=True)
        state = state.get('state_dict', state)
        sub = {k[len('mllm.'):]: v for k, v in state.items() if k.startswith('mllm.')}
        missing = adapter.load_state_dict(sub, strict=False)
        print_log(f'adapter teacher: loaded {len(sub)} mllm tensors from {checkpoint} '
                  f'({len(missing.unexpected_keys)} unexpected)', logger='current')
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    adapter.to(device)
    return AdapterTeacher(adapter, batch_size, max_new_tokens, name)


class MalformedReply(Exception):
    """The endpoint answered, but not with a chat completion carrying text."""


def image_data_url(image: np.ndarray, quality: int = 95) -> str:
    """An RGB uint8 image as a ``data:image/jpeg;base64,...`` URL."""
    ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(image[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError('could not encode the image as JPEG')
    return 'data:image/jpeg;base64,' + base64.b64encode(buf.tobytes()).decode('ascii')


class OpenAITeacher:
    """Chat completions on an OpenAI-compatible endpoint (see module docstring).

    Args:
        api_base: e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model's name.
        api_key_env: environment variable holding the key (optional: 'EMPTY' is sent without).
        concurrency: requests in flight. timeout: seconds per request.
        request_retries: further tries of a failed request; the k-th waits
            ``backoff * 2**k`` seconds (+ up to 25 % jitter).
    """

    def __init__(self, api_base: str, model: str, api_key_env: str = 'OPENAI_API_KEY',
                 concurrency: int = 8, timeout: float = 120.0, request_retries: int = 3,
                 backoff: float = 1.0, max_tokens: int = 256, temperature: float = 0.0):
        import openai
        if concurrency < 1:
            raise ValueError(f'OpenAITeacher: concurrency must be >= 1, got {concurrency}')
        self._openai = openai
        # retries are ours (they also cover malformed replies), so the client's are off
        self.client = openai.OpenAI(base_url=api_base, api_key=os.environ.get(api_key_env) or
                                    'EMPTY', timeout=timeout, max_retries=0)
        self.model, self.timeout, self.request_retries = model, timeout, request_retries
        self.backoff, self.max_tokens, self.temperature = backoff, max_tokens, temperature
        self.concurrency = self.parallelism = concurrency
        self.name = f'openai:{model}@{api_base}'
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix='glcot-teacher')

    def ask(self, requests: Sequence[Request]) -> List[Reply]:
        return list(self._pool.map(lambda r: self._ask_one(*r), requests))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()

    def _messages(self, text: str, image: np.ndarray) -> list:
        return [{'role': 'user', 'content': [
            {'type': 'image_url', 'image_url': {'url': image_data_url(image)}},
            {'type': 'text', 'text': text}]}]

    def _text_of(self, resp) -> str:
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError) as e:
            raise MalformedReply(f'not a chat completion ({type(resp).__name__}: '
                                 f'{str(resp)[:80]!r})') from e
        if not isinstance(content, str):
            raise MalformedReply(f'message content is {type(content).__name__}, not text')
        return content

    def _ask_one(self, text: str, image: np.ndarray) -> Reply:
        openai = self._openai
        messages = self._messages(text, image)
        error = 'not asked'
        for attempt in range(self.request_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random()))
            try:
                resp = self.client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=self.max_tokens,
                    temperature=self.temperature)
                return Reply(text=self._text_of(resp))
            except openai.APIStatusError as e:
                error = f'HTTP {e.status_code}: {str(e.message)[:120]}'
                if e.status_code < 500 and e.status_code not in RETRY_STATUS:
                    break  # a client error (bad model name, auth): retrying cannot help
            except openai.APITimeoutError:
                error = f'no reply within {self.timeout:g} s'
            except openai.APIConnectionError as e:
                error = f'connection failed: {e.__cause__ or e}'
            except (openai.APIError, MalformedReply) as e:
                error = f'malformed reply: {e}'
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                # the client parses a body labelled application/json and raises this as is
                error = f'malformed reply: the body is not JSON ({type(e).__name__}: {e})'
        return Reply(error=f'{error} (after {attempt + 1} tries)')


__all__ = ['Reply', 'AdapterTeacher', 'OpenAITeacher', 'build_adapter_teacher',
           'image_data_url', 'FAMILIES']
