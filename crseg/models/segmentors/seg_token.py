"""SegTokenSegmentor: the LISA-style baseline (a ``[SEG]`` token's hidden state prompts SAM).

Two protocols (``protocol=``), both on mmseg's ``BaseSegmentor`` contract:

``'lisa'`` (default): LISA's own (dvlab-research/LISA; see :mod:`.lisa_protocol`)::

    forward(mode='loss')    -> loss()
        prompt  = one of LISA's training questions by ``is_sentence``   (random draw)
        target  = one of LISA's five answers, e.g. "Sure, it is [SEG]." (random draw)
        mllm.build_inputs -> mllm.forward(output_hidden_states=True)
            |- loss_lm                                      LM loss on the answer
            '- last hidden state one position before [SEG]  [D_text] (the state predicting it)
        projector (MLP) -> refiner(image, sparse_embeddings=[SEG]) -> loss_mask_{bce,dice}
    forward(mode='predict') -> predict()
        prompt  = LISA's validation question by ``is_sentence``; answer teacher-forced "[SEG]."
        ONE mllm.forward for the batch (no generation) -> state before [SEG] -> projector
        -> refiner -> mask at the original size

``'generate'``: GLCoT's plain instruction, generation at test time::

    loss():   prompt = glcot.build_prompt(query) ('plain': "answer: ..."),
              target = "answer: <answer> [SEG]"; state where [SEG] is the *input* token
    predict(): mllm.generate -> [SEG] among the generated ids?
        no  -> empty mask, ``num_parse_failures`` += 1 (logged)
        yes -> an extra teacher-forced forward on prompt + response (up to the first [SEG]):
               generation does not return hidden states (one more forward per sample)
               -> projector -> refiner -> mask at the original size

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
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from torch import Tensor, nn

from crseg.models.refiners import RefinerPrompts
from crseg.registry import MODELS
from . import lisa_protocol as lisa
from .builder import build_part
from .crseg import CRSeg
from .loss_weights import merge_loss_weights

EMPTY_LOGIT = -10.0
PROTOCOLS = ('lisa', 'generate')


def write_predictions(logits: List[Optional[Tensor]], data_samples) -> list:
    """Resize each ``[H, W]`` logit map to the sample's ``ori_shape``; None -> empty mask.

    Sets ``seg_logits`` and ``pred_sem_seg`` (logits > 0, LISA) on every sample.
    """
    for lg, s in zip(logits, data_samples):
        ori = tuple(s.metainfo.get('ori_shape', s.metainfo.get('img_shape'))[:2])
        if lg is None:
            logit = torch.full((1, *ori), EMPTY_LOGIT)
        else:
            logit = F.interpolate(lg[None, None].float(), size=ori, mode='bilinear',
                                  align_corners=False)[0]
        s.set_data(dict(seg_logits=PixelData(data=logit),
                        pred_sem_seg=PixelData(data=(logit > 0).long())))
    return data_samples


@MODELS.register_module()
class SegTokenSegmentor(BaseSegmentor):
    """LISA-style segmentor: ``[SEG]`` hidden state -> MLP -> SAM sparse prompt.

    Args:
        mllm: an MLLM adapter (``LlavaAdapter``, ...); trained fully or with LoRA by its config.
        refiner: a ``SAMRefiner`` (its prompt encoder width sets the projector's output).
        protocol: 'lisa' (LISA's questions and answers, one teacher-forced forward at test
            time; needs ``is_sentence`` on every sample) or 'generate' (GLCoT's prompt and
            target, generation at test time). See the module docstring.
        glcot: prompt/target builder of the 'generate' protocol; ``GLCoT(mode='plain')``
            gives "answer: <answer>".
        seg_token: the added token.
        projector_channels: hidden width of the MLP (default: the text hidden size).
        loss_weights: ``lm`` and ``mask`` weights; 0 turns one off.
        max_new_tokens: generation length at predict, 'generate' only (default: the
            adapter's).
    """

    def __init__(self,
                 mllm: Union[dict, nn.Module],
                 refiner: Union[dict, nn.Module],
                 protocol: str = 'lisa',
                 glcot: Union[dict, object] = dict(type='GLCoT', mode='plain'),
                 seg_token: str = '[SEG]',
                 projector_channels: Optional[int] = None,
                 loss_weights: Optional[dict] = None,
                 max_new_tokens: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ReasonSegDataPreprocessor')
        if protocol not in PROTOCOLS:
            raise ValueError(f'SegTokenSegmentor: protocol={protocol!r}, expected one of '
                             f'{PROTOCOLS}')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.protocol = protocol
        self._rng: Optional[random.Random] = None  # LISA training draws (see module doc)
        self.mllm = build_part(mllm)
        self.refiner = build_part(refiner)
        self.glcot = build_part(glcot)
        if not hasattr(self.refiner, 'sam'):
            raise ValueError(f'SegTokenSegmentor needs a SAMRefiner (the [SEG] embedding is a '
                             f'SAM sparse prompt), got {type(self.refiner).__name__}')
        self.seg_token = seg_token
        self.seg_token_id = self._add_seg_token(seg_token)
        d_text = self.mllm.text_config.hidden_size
        d_prompt = self.refiner.sam.prompt_encoder.embed_dim
        hidden = projector_channels or d_text
        self.projector = nn.Sequential(nn.Linear(d_text, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, d_prompt))
        self.loss_weights = merge_loss_weights(type(self).__name__, dict(lm=1.0, mask=1.0),
                                               loss_weights)
        self.max_new_tokens = max_new_tokens
        self.train_cfg, self.test_cfg = train_cfg or {}, test_cfg or {}
        self.num_parse_failures = 0  # predictions without [SEG]
        self.align_corners = False

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

    def _targets(self, data_samples):
        if self.protocol == 'lisa':
            return self._lisa_answers(len(data_samples), training=True)
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

    def _seg_states(self, batch, hidden: Tensor) -> List[Optional[Tensor]]:
        """Hidden state of the first [SEG] of each response (None when it was cut away):
        'lisa' reads the position before it (the state predicting [SEG]), 'generate' the
        [SEG] input position itself."""
        ids = batch.model_inputs['input_ids']
        shift = lisa.SEG_STATE_OFFSET if self.protocol == 'lisa' else 0
        out = []
        for b, (start, stop) in enumerate(batch.response_spans):
            pos = (ids[b, start:stop] == self.seg_token_id).nonzero()
            out.append(hidden[b, start + int(pos[0, 0]) + shift] if pos.numel() else None)
        return out

    def _masks(self, inputs, states: List[Tensor], keys) -> List[Tensor]:
        prompts = [self.projector(h.float())[None] for h in states]
        out = self.refiner(inputs, RefinerPrompts(embeddings=prompts, keys=keys))
        return [m[0] for m in out['mask_logits']]

    # ------------------------------------------------------------------ training
    def loss(self, inputs: List[Tensor], data_samples) -> dict:
        images = CRSeg._np_images(inputs)
        responses, spans = self._targets(data_samples)
        batch = self.mllm.build_inputs(images, self._prompts(data_samples, training=True),
                                       responses, spans)
        out = self.mllm.forward(batch, output_hidden_states=True)
        w, losses = self.loss_weights, {}
        if w['lm'] > 0:
            losses['loss_lm'] = w['lm'] * out['loss_lm']
        if w['mask'] <= 0:
            return losses
        states = self._seg_states(batch, out['hidden_states'])
        keep = [i for i, h in enumerate(states) if h is not None]
        if len(keep) < len(states):
            print_log(f'SegTokenSegmentor.loss: {len(states) - len(keep)} sample(s) lost '
                      '[SEG] to the context limit; no mask loss for them', logger='current',
                      level=30)
        if not keep:  # keep the projector in the graph (DDP) with a zero loss
            zero = sum(p.sum() for p in self.projector.parameters()) * 0
            return {**losses, 'loss_mask_bce': zero, 'loss_mask_dice': zero}
        masks = self._masks([inputs[i] for i in keep], [states[i] for i in keep], None)
        gts = [data_samples[i].gt_sem_seg.data[0] for i in keep]
        for k, v in CRSeg._mask_losses(masks, gts, 'loss_mask').items():
            losses[k] = w['mask'] * v
        return losses

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, inputs: List[Tensor], data_samples=None):
        if data_samples is None:
            raise ValueError('SegTokenSegmentor.predict needs data samples carrying `query`')
        if self.protocol == 'lisa':
            return self._predict_lisa(inputs, data_samples)
        images = CRSeg._np_images(inputs)
        prompts = self._prompts(data_samples)
        gens = self.mllm.generate(images, prompts, max_new_tokens=self.max_new_tokens)
        tok = self.mllm.tokenizer
        found, responses = [], []
        for i, (gen, s) in enumerate(zip(gens, data_samples)):
            has_seg = self.seg_token_id in gen.token_ids
            text = tok.decode(gen.token_ids, skip_special_tokens=False)
            parsed = self.glcot.parse(text.replace(self.seg_token, ' ').strip())
            s.set_metainfo(dict(pred_text=text, pred_answer=parsed.answer, seg_found=has_seg))
            if has_seg:
                cut = gen.token_ids[:gen.token_ids.index(self.seg_token_id) + 1]
                found.append(i)
                responses.append(tok.decode(cut, skip_special_tokens=False))
            else:
                self.num_parse_failures += 1
                print_log(f"SegTokenSegmentor: no {self.seg_token} in the response for "
                          f"{s.metainfo.get('img_path')}: empty mask", logger='current',
                          level=30)
        logits: List[Optional[Tensor]] = [None] * len(data_samples)
        if found:
            # the extra teacher-forced forward: generation returns no hidden states
            batch = self.mllm.build_inputs([images[i] for i in found],
                                           [prompts[i] for i in found], responses)
            states = self._seg_states(batch, self.mllm.forward(
                batch, output_hidden_states=True)['hidden_states'])
            ok = [(i, h) for i, h in zip(found, states) if h is not None]
            for i in set(found) - {i for i, _ in ok}:
                self.num_parse_failures += 1
                print_log(f'SegTokenSegmentor: [SEG] lost to the context limit for sample '
                          f'{i}: empty mask', logger='current', level=30)
            if ok:
                masks = self._masks([inputs[i] for i, _ in ok], [h for _, h in ok],
                                    [data_samples[i].metainfo.get('img_path') for i, _ in ok])
                for (i, _), m in zip(ok, masks):
                    logits[i] = m
        return write_predictions(logits, data_samples)

    def _predict_lisa(self, inputs: List[Tensor], data_samples):
        """LISA's validation: "[SEG]." teacher-forced, one forward for the batch."""
        images = CRSeg._np_images(inputs)
        responses, spans = self._lisa_answers(len(data_samples), training=False)
        batch = self.mllm.build_inputs(images, self._prompts(data_samples), responses, spans)
        states = self._seg_states(batch, self.mllm.forward(
            batch, output_hidden_states=True)['hidden_states'])
        logits: List[Optional[Tensor]] = [None] * len(data_samples)
        ok = [i for i, h in enumerate(states) if h is not None]
        for i, s in enumerate(data_samples):
            s.set_metainfo(dict(pred_text=responses[i], seg_found=i in ok))
            if i not in ok:
                self.num_parse_failures += 1
                print_log(f"SegTokenSegmentor: [SEG] lost to the context limit for "
                          f"{s.metainfo.get('img_path')}: empty mask", logger='current',
                          level=30)
        if ok:
            masks = self._masks([inputs[i] for i in ok], [states[i] for i in ok],
                                [data_samples[i].metainfo.get('img_path') for i in ok])
            for i, m in zip(ok, masks):
                logits[i] = m
        return write_predictions(logits, data_samples)

    def _forward(self, inputs: List[Tensor], data_samples=None) -> Tensor:
        """Mask logits of the teacher-forced pass, [B, 1, H, W] when the sizes agree, else a
        list ('generate': targets from the samples; 'lisa': the validation prompt/answer)."""
        images = CRSeg._np_images(inputs)
        if self.protocol == 'lisa':
            responses, spans = self._lisa_answers(len(data_samples), training=False)
        else:
            responses, spans = self._targets(data_samples)
        batch = self.mllm.build_inputs(images, self._prompts(data_samples), responses, spans)
        states = self._seg_states(batch, self.mllm.forward(
            batch, output_hidden_states=True)['hidden_states'])
        if any(h is None for h in states):
            raise ValueError('SegTokenSegmentor._forward: [SEG] cut by the context limit')
        masks = self._masks(inputs, states, None)
        return torch.stack(masks)[:, None] if len({m.shape for m in masks}) == 1 else masks

    def extract_feat(self, inputs):
        raise NotImplementedError('SegTokenSegmentor has no backbone features; see loss()')

    def encode_decode(self, inputs, batch_data_samples):
        return self._forward(inputs, batch_data_samples)


__all__ = ['SegTokenSegmentor', 'write_predictions']
