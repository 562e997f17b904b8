"""How an adapter turns (image, prompt[, response, answer span]) samples into an MLLMBatch.

:class:`EncodingMixin` is part of :class:`~.base.BaseMLLMAdapter`: ``build_inputs`` encodes each
sample (:meth:`EncodingMixin.encode_sample`) through the family hooks defined here with their
defaults (``chat_text``, ``encode_prefix``, ``image_layout``, ``vision_token_ids``) and in
the base class (``image_grid``, ``image_token_id``, ``max_context``), then pads the samples
together (:func:`.batching.collate`). The sequence layout, context cutting and padding rules
are described in :mod:`.batching`.
"""
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import batching as B
from .batching import EncodedSample, ImageTokenLayout, MLLMBatch


class EncodingMixin:
    """Input encoding of :class:`~.base.BaseMLLMAdapter` (needs its ``processor``,
    ``tokenizer``, ``hf_model``, ``answer_token_weight``, ``image_grid``, ``image_token_id``,
    ``max_context``)."""

    @property
    def vision_token_ids(self) -> List[int]:
        """Ids of the image / video / vision marker tokens of the model."""
        cfg = self.hf_model.config
        ids = {self.image_token_id}
        ids |= {getattr(cfg, k) for k in B.VISION_TOKEN_FIELDS
                if getattr(cfg, k, None) is not None}
        return sorted(i for i in ids if isinstance(i, int) and i >= 0)

    def chat_text(self, prompt: str) -> str:
        """The prompt in the model's chat template, with the generation prompt."""
        msgs = [{'role': 'user', 'content': [{'type': 'image'},
                                             {'type': 'text', 'text': prompt}]}]
        return self.processor.apply_chat_template(msgs, tokenize=False,
                                                  add_generation_prompt=True)

    def encode_prefix(self, text: str, image: np.ndarray) -> dict:
        """The processor's output (batch of one) for ``text`` with ``image``: channels-last
        explicitly, so a 1-3 px high image is never read as channels-first."""
        return self.processor(text=[text], images=[image], return_tensors='pt',
                              input_data_format='channels_last')

    def image_layout(self, ids: Tensor, encoded: dict, index: int) -> ImageTokenLayout:
        """The image tokens of sample ``index`` (its sequence ``ids``, its prefix's processor
        output ``encoded``)."""
        positions = (ids == self.image_token_id).nonzero()[:, 0]
        grid = tuple(int(g) for g in self.image_grid(encoded, 0))
        if positions.numel() != grid[0] * grid[1]:
            raise ValueError(f'build_inputs: sample {index}: {positions.numel()} image tokens '
                             f'in the sequence but the image grid is {grid[0]}x{grid[1]} = '
                             f'{grid[0] * grid[1]}')
        return ImageTokenLayout(positions, grid)

    def _tokens(self, text: str, what: str, index: int, offsets: bool = False):
        """Token ids (+ offsets) of ``text``, refusing the model's vision marker tokens."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=offsets)
        found = sorted(set(enc['input_ids']) & set(self.vision_token_ids))
        if found:
            names = self.tokenizer.convert_ids_to_tokens(found)
            raise ValueError(
                f'build_inputs: sample {index}: the {what} contains the image token(s) {names}, '
                f'which the model reads as image placeholders; remove them from the {what} '
                f'({text!r})')
        return enc

    def encode_sample(self, image: np.ndarray, prompt: str, response: Optional[str] = None,
                      span: Optional[Tuple[int, int]] = None, rows: str = 'answer',
                      index: int = 0, reserve: int = 0,
                      response_prefix: Optional[str] = None) -> EncodedSample:
        """One sample's sequence ``[prefix | query | suffix | response | eos]`` (unpadded).
        For generation (no ``response``), ``response_prefix`` is put after the suffix: the
        response the model generates continues it. A ``QueryPrompt`` too long for the context
        is encoded ``[prefix | before | query | after | suffix ...]`` and only its query is cut
        (:func:`.batching.query_parts`)."""
        B.check_image(image, index)
        if response is not None and response_prefix:
            raise ValueError(f'build_inputs: sample {index}: a response prefix is for '
                             'generation; a training sample has its whole response')
        pre, query, post = B.split_prompt(self.chat_text(prompt), prompt)
        enc = self.encode_prefix(pre, image)
        ids_pre = enc['input_ids'][0].tolist()
        ids_q = self._tokens(query, 'query', index)['input_ids'] if query else []
        ids_post = self.tokenizer(post, add_special_tokens=False)['input_ids'] if post else []
        if response_prefix:
            ids_post = ids_post + self._tokens(response_prefix, 'response prefix',
                                               index)['input_ids']
        ids_r, offs, tail = [], [], []
        if response is not None:
            r = self._tokens(response, 'response', index, offsets=True)
            ids_r, offs = list(r['input_ids']), [tuple(o) for o in r['offset_mapping']]
            tail = [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
        fixed = 'image + template'
        parts = B.query_parts(prompt) if query else None
        if parts is not None and B.excess_tokens(
                self.max_context, len(ids_pre) + len(ids_post) + len(tail), len(ids_q),
                len(ids_r), reserve) > 0:
            # cut the query alone: the prompt's text around it (an instruction) stays whole
            before, query, after = parts
            ids_pre = ids_pre + (self._tokens(before, 'prompt', index)['input_ids']
                                 if before else [])
            ids_q = self._tokens(query, 'query', index)['input_ids'] if query else []
            ids_post = (self._tokens(after, 'prompt', index)['input_ids'] if after else []) \
                + ids_post
            fixed = 'image + template + instruction'
        ids_q, ids_r, offs = B.fit_context(self.max_context,
                                           len(ids_pre) + len(ids_post) + len(tail),
                                           ids_q, ids_r, offs, reserve, index, fixed)
        ids = torch.tensor(ids_pre + ids_q + ids_post + ids_r + tail, dtype=torch.long)
        n_prompt = len(ids) - len(ids_r) - len(tail)
        per_token, images = B.split_processor_output(enc, len(ids))
        layout = self.image_layout(ids, enc, index)
        labels = weights = None
        if response is None:
            sel = torch.tensor([n_prompt - 1])
        else:
            labels, weights, sel = B.response_targets(ids, n_prompt, offs, span, rows,
                                                      self.answer_token_weight, index)
        return EncodedSample(ids, per_token, images, layout, sel,
                             (n_prompt, n_prompt + len(ids_r)), labels, weights)

    def build_inputs(self, images: List[np.ndarray], prompts: List[str],
                     responses: Optional[List[str]] = None,
                     answer_spans: Optional[List[Tuple[int, int]]] = None,
                     rows: str = 'answer', reserve_tokens: int = 0,
                     response_prefixes: Optional[List[str]] = None) -> MLLMBatch:
        """Tokenize a batch (one RGB uint8 HxWx3 image per sample); see module docstring.

        With ``responses`` the batch is right-padded and labelled for training, otherwise
        left-padded for generation. ``answer_spans`` are char spans inside each response.
        ``reserve_tokens``: context kept free for generated tokens when a prompt is cut.
        ``response_prefixes`` (generation only): per sample, text the response starts with.
        A query or response holding the model's image / vision marker tokens (``<image>``,
        ``<|image_pad|>``, ...) is refused with an error naming the sample and the text.
        """
        B.check_batch(images, prompts, responses, answer_spans, rows)
        if response_prefixes is not None and len(response_prefixes) != len(prompts):
            raise ValueError(f'build_inputs: {len(response_prefixes)} response prefixes for '
                             f'{len(prompts)} prompts')
        samples = [
            self.encode_sample(img, p, None if responses is None else responses[i],
                               None if answer_spans is None else answer_spans[i], rows, i,
                               reserve_tokens,
                               None if response_prefixes is None else response_prefixes[i])
            for i, (img, p) in enumerate(zip(images, prompts))]
        # the processor works on the CPU; the model may not
        return B.collate(samples, responses is None, self.tokenizer.pad_token_id,
                         self.hf_model.device, self.hf_model.dtype)
