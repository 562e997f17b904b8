"""SegTokenSegmentor: the LISA-style baseline (a ``[SEG]`` token's hidden state prompts SAM).

Two protocols (``protocol=``), both on :class:`~.base.BaseReasonSegmentor`'s contract:

``'lisa'`` (default): LISA's own (dvlab-research/LISA; see :mod:`.lisa_protocol`)::

    forward(mode='loss')    -> loss()
        prompt  = one of LISA's training questions by ``is_sentence``   (random draw)
        target  = one of LISA's five answers, e.g. "Sure, it is [SEG]." (random draw)
        mllm.build_inputs -> mllm.forward(output_hidden_states=True)
            |- loss_lm                                      LM loss on the answer
            '- last hidden state one position before [SEG]  [D_text] (the state predicting it)
        seg_head (MLP) -> refiner(image, RefinerPrompts(embeddings=token))
        -> seg_head.loss                                    -> loss_mask_{bce,dice}
    forward(mode='predict') -> predict()
        prompt  = LISA's validation question by ``is_sentence``; answer teacher-forced "[SEG]."
        ONE mllm.forward for the batch (no generation) -> state before [SEG] -> seg_head
        -> refiner -> mask at the original size

``'generate'``: GLCoT's plain instruction, generation at test time::

    loss():   prompt = glcot.build_prompt(query) ('plain': "answer: ..."),
              target = "answer: <answer> [SEG]"; state where [SEG] is the *input* token
    predict(): mllm.generate -> [SEG] among the generated ids?
        no  -> empty mask, outcome ``seg_missing``
        yes -> an extra teacher-forced forward on prompt + response (up to the first [SEG]):
               generation does not return hidden states (one more forward per sample)
               -> seg_head -> refiner -> mask at the original size

``forward(mode='tensor')`` -> :meth:`~SegTokenSegmentor._forward`: the refined ``[1, H, W]``
map of every sample from the teacher-forced pass ('lisa': its validation answer; 'generate':
the training target).

Outcome ``seg_missing`` (a parse failure; in every predicted sample's ``outcomes``, see
:mod:`.base`): no ``[SEG]`` in the generated response, or the ``[SEG]`` was cut away by the
context limit; that sample's mask is empty.

The training draws of the LISA protocol come from a private ``random.Random`` seeded, at the
first training step, from Python's ``random`` module, which mmengine's runner seeds with
``randomness.seed``: the same seed gives the same questions and answers; each step draws anew
(LISA draws with ``random.choice`` on every sample too).

The [SEG] token is added to the tokenizer as a special token and the embeddings are resized
(new rows start at the mean embedding, transformers' default), so the MLLM's embedding and
output rows must be trainable (full fine-tuning, as in the tiny config; with ``freeze=True``
and LoRA the new rows stay random: a warning says so).
"""
import random
from typing import List, Optional, Union

import torch
from mmengine.logging import print_log
from torch import Tensor

from crseg.models.refiners import RefinerPrompts
from crseg.registry import MODELS
from crseg.utils.check_settings import check_int
from . import lisa_protocol as lisa
from .base import BaseReasonSegmentor
from .builder import build_part
from .loss_weights import merge_loss_weights

PROTOCOLS = ('lisa', 'generate')


@MODELS.register_module()
class SegTokenSegmentor(BaseReasonSegmentor):
    """LISA-style segmentor: ``[SEG]`` hidden state -> :class:`SegTokenHead` -> refiner prompt.

    Args:
        mllm / refiner / data_preprocessor / train_cfg / test_cfg / init_cfg: see
            :class:`BaseReasonSegmentor`. The refiner must take ``'embeddings'`` prompts and
            give their width (``embed_dim``): ``SAMRefiner``.
        protocol: 'lisa' (LISA's questions and answers, one teacher-forced forward at test
            time; needs ``is_sentence`` on every sample) or 'generate' (GLCoT's prompt and
            target, generation at test time). See the module docstring.
        glcot: prompt/target builder of the 'generate' protocol; ``GLCoT(mode='plain')``
            gives "answer: <answer>".
        seg_token: the added token.
        seg_head: the :class:`SegTokenHead` config (or module); its ``in_channels`` (the text
            hidden size) and ``out_channels`` (``refiner.embed_dim``) are filled when left out.
        loss_weights: ``lm`` and ``mask`` weights; 0 turns one off.
        max_new_tokens: generation length at predict, 'generate' only (default: the
            adapter's).
    """

    OUTCOMES = ('seg_missing', )
    PARSE_FAILURES = ('seg_missing', )

    def __init__(self, mllm, refiner, protocol: str = 'lisa',
                 glcot: Union[dict, object] = dict(type='GLCoT', mode='plain'),
                 seg_token: str = '[SEG]',
                 seg_head: Union[dict, torch.nn.Module] = dict(type='SegTokenHead'),
                 loss_weights: Optional[dict] = None, max_new_tokens: Optional[int] = None,
                 **kwargs):
        if protocol not in PROTOCOLS:
            raise ValueError(f'SegTokenSegmentor: protocol={protocol!r}, expected one of '
                             f'{PROTOCOLS}')
        name = type(self).__name__  # numbers first: a bad one is named before any loading
        max_new_tokens = check_int(name, 'max_new_tokens', max_new_tokens, 1, optional=True)
        weights = merge_loss_weights(name, dict(lm=1.0, mask=1.0), loss_weights)
        super().__init__(mllm, refiner, **kwargs)
        self.protocol = protocol
        self._rng: Optional[random.Random] = None  # LISA training draws (see module doc)
        self.glcot = build_part(glcot)
        accepts = getattr(self.refiner, 'accepts', ())
        width = getattr(self.refiner, 'embed_dim', None)
        if 'embeddings' not in accepts or width is None:
            raise ValueError(
                'SegTokenSegmentor: the [SEG] state reaches the refiner as a learned prompt '
                "token, so the refiner must accept 'embeddings' and give their width "
                f'(embed_dim), as SAMRefiner does; {type(self.refiner).__name__} accepts '
                f'{list(accepts)} with embed_dim={width}')
        self.seg_token = seg_token
        self.seg_token_id = self._add_seg_token(seg_token)
        widths = dict(in_channels=self.mllm.text_config.hidden_size, out_channels=width)
        if isinstance(seg_head, dict):
            seg_head = {**seg_head, **{k: v for k, v in widths.items()
                                       if seg_head.get(k) is None}}
        self.seg_head = build_part(seg_head)
        got = {k: getattr(self.seg_head, k, None) for k in widths}
        if got != widths:
            raise ValueError(f'SegTokenSegmentor: seg_head widths {got} do not fit the MLLM '
                             f'and refiner, which need {widths}')
        self.loss_weights = weights
        self.max_new_tokens = max_new_tokens

    def _add_seg_token(self, token: str) -> int:
        tok = self.mllm.tokenizer
        added = tok.add_tokens([token], special_tokens=True)
        token_id = tok.convert_tokens_to_ids(token)
        hf = self.mllm.hf_model
        if hf.get_input_embeddings().num_embeddings < len(tok):
            hf.resize_token_embeddings(len(tok))
        if added and not hf.get_input_embeddings().weight.requires_grad:
            print_log(f'SegTokenSegmentor: {token} was added but the input embeddings are '
                      'frozen; its embedding stays at its initial value', logger='current',
                      level=30)
        return token_id

    # ------------------------------------------------------------------ helpers
    def _draws(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(random.getrandbits(64))
        return self._rng

    def _prompts(self, data_samples, training: bool = False) -> List[str]:
        if self.protocol == 'generate':
            return [self.glcot.build_prompt(s.metainfo['query']) for s in data_samples]
        out = []
        for s in data_samples:
            q, sent = s.metainfo.get('query'), s.metainfo.get('is_sentence')
            where = f"SegTokenSegmentor: sample {s.metainfo.get('img_path')}"
            out.append(lisa.train_question(q, sent, self._draws(), where) if training
                       else lisa.eval_question(q, sent, where))
        return out

    def _lisa_answers(self, n: int, training: bool):
        if training:
            responses = [lisa.train_answer(self._draws(), self.seg_token) for _ in range(n)]
        else:
            responses = [lisa.EVAL_ANSWER.replace('[SEG]', self.seg_token)] * n
        return responses, [(0, len(r)) for r in responses]

    def _targets(self, data_samples, training: bool = True):
        """Teacher-forced responses and answer spans ('lisa': a training draw or the
        validation answer; 'generate': GLCoT's target + [SEG])."""
        if self.protocol == 'lisa':
            return self._lisa_answers(len(data_samples), training)
        responses, spans = [], []
        for s in data_samples:
            try:
                text, span = self.glcot.build_target(s.metainfo.get('glcot'),
                                                     answer=s.metainfo.get('answer'))
            except ValueError as err:
                raise ValueError(f"sample {s.metainfo.get('img_path')}: no training target for "
                                 f'SegTokenSegmentor: {err}') from err
            responses.append(f'{text} {self.seg_token}')
            spans.append((span[0], len(responses[-1])))
        return responses, spans

    def _seg_states(self, images, prompts, responses, spans):
        """One teacher-forced forward -> (MLLM output, hidden state of each response's first
        [SEG], None when it was cut away): 'lisa' reads the position before it (the state
        predicting [SEG]), 'generate' the [SEG] input position itself."""
        batch = self.mllm.build_inputs(images, prompts, responses, spans)
        out = self.mllm.forward(batch, output_hidden_states=True)
        ids, hidden = batch.model_inputs['input_ids'], out['hidden_states']
        shift = lisa.SEG_STATE_OFFSET if self.protocol == 'lisa' else 0
        states = []
        for b, (start, stop) in enumerate(batch.response_spans):
            pos = (ids[b, start:stop] == self.seg_token_id).nonzero()
            states.append(hidden[b, start + int(pos[0, 0]) + shift] if pos.numel() else None)
        return out, states

    def _masks(self, inputs, states: List[Optional[Tensor]],
               keys=None) -> List[Optional[Tensor]]:
        """One refiner call for the samples with a state: a ``[1, H, W]`` map each, else None."""
        ok = [i for i, h in enumerate(states) if h is not None]
        masks: List[Optional[Tensor]] = [None] * len(states)
        if ok:
            out = self.refiner([inputs[i] for i in ok], RefinerPrompts(
                embeddings=[self.seg_head(states[i])[None] for i in ok],
                keys=None if keys is None else [keys[i] for i in ok]))
            for i, m in zip(ok, out.mask_logits):
                masks[i] = m
        return masks

    # ------------------------------------------------------------------ training
    def loss(self, inputs: List[Tensor], data_samples) -> dict:
        responses, spans = self._targets(data_samples)
        out, states = self._seg_states(self.np_images(inputs),
                                       self._prompts(data_samples, training=True),
                                       responses, spans)
        w, losses = self.loss_weights, {}
        if w['lm'] > 0:
            losses['loss_lm'] = w['lm'] * out['loss_lm']
        if w['mask'] <= 0:
            return losses
        keep = [i for i, h in enumerate(states) if h is not None]
        if len(keep) < len(states):
            print_log(f'SegTokenSegmentor.loss: {len(states) - len(keep)} sample(s) lost '
                      '[SEG] to the context limit; no mask loss for them', logger='current',
                      level=30)
        if not keep:  # keep the head in the graph (DDP) with a zero loss
            zero = sum(p.sum() for p in self.seg_head.parameters()) * 0
            return {**losses, 'loss_mask_bce': zero, 'loss_mask_dice': zero}
        masks = self._masks(inputs, states)
        mask_losses = self.seg_head.loss([masks[i] for i in keep],
                                         [data_samples[i].gt_sem_seg.data[0] for i in keep])
        return {**losses, **{k: w['mask'] * v for k, v in mask_losses.items()}}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, inputs: List[Tensor], data_samples=None):
        self.check_samples(data_samples)
        outcomes = self.new_outcomes(len(data_samples))
        images, prompts = self.np_images(inputs), self._prompts(data_samples)
        if self.protocol == 'lisa':  # LISA's validation: "[SEG]." teacher-forced, no generation
            found = list(range(len(data_samples)))
            responses, spans = self._targets(data_samples, training=False)
            for s, r in zip(data_samples, responses):
                s.set_metainfo(dict(pred_text=r))
        else:
            found, responses = self._generate(images, prompts, data_samples, outcomes)
            spans = None
        logits: List[Optional[Tensor]] = [None] * len(data_samples)
        if found:  # 'generate': the extra teacher-forced forward (no hidden states from it)
            _, states = self._seg_states([images[i] for i in found], [prompts[i] for i in found],
                                         responses, spans)
            keys = [data_samples[i].metainfo.get('img_path') for i in found]
            for i, m in zip(found, self._masks([inputs[i] for i in found], states, keys)):
                logits[i] = m
                if m is None:
                    self.note(outcomes[i], 'seg_missing', data_samples[i],
                              f'{self.seg_token} lost to the context limit: empty mask')
        return self.write_predictions(logits, data_samples, outcomes)

    def _generate(self, images, prompts, data_samples, outcomes):
        """Generate; the samples whose response has [SEG] and their responses up to it."""
        gens = self.mllm.generate(images, prompts, max_new_tokens=self.max_new_tokens)
        tok = self.mllm.tokenizer
        found, responses = [], []
        for i, (gen, s) in enumerate(zip(gens, data_samples)):
            text = tok.decode(gen.token_ids, skip_special_tokens=False)
            parsed = self.glcot.parse(text.replace(self.seg_token, ' ').strip())
            s.set_metainfo(dict(pred_text=text, pred_answer=parsed.answer))
            if self.seg_token_id in gen.token_ids:
                cut = gen.token_ids[:gen.token_ids.index(self.seg_token_id) + 1]
                found.append(i)
                responses.append(tok.decode(cut, skip_special_tokens=False))
            else:
                self.note(outcomes[i], 'seg_missing', s,
                          f'no {self.seg_token} in the response: empty mask')
        return found, responses

    def _forward(self, inputs: List[Tensor], data_samples=None) -> List[Tensor]:
        """The refined ``[1, H, W]`` logits of each sample from the teacher-forced pass
        ('lisa': the validation question and answer; 'generate': the samples' targets)."""
        self.check_samples(data_samples)
        responses, spans = self._targets(data_samples, training=False)
        _, states = self._seg_states(self.np_images(inputs), self._prompts(data_samples),
                                     responses, spans)
        if any(h is None for h in states):
            raise ValueError('SegTokenSegmentor._forward: [SEG] cut by the context limit')
        return self._masks(inputs, states)


__all__ = ['SegTokenSegmentor', 'PROTOCOLS']
