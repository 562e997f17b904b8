"""The web demo's page (Gradio): image + query -> mask, GLCoT response, EAP heat-map, timings.

One request = one :class:`~crseg.apis.ReasonSegInferencer` call. The page shows the refined
mask over the image (and the mask as a PNG to download), the EAP heat-map with the positive
(green) and negative (red) points, the response with the parsed answer highlighted and whether
the parser fell back, and the time spent in reasoning (generation), EAP and refinement, with
whether the refiner's image-embedding cache served the image.

Input rules (each violation is a visible error in the page; the server keeps serving):

* the upload must be an image crseg's one reader (:mod:`crseg.datasets.image_io`, the
  datasets' and ``tools/demo.py``'s) can read (anything else: "not an image"); it is read as
  they read it (EXIF orientation applied, alpha dropped, 16-bit scaled);
* images above ``max_pixels`` are refused; images whose longer side exceeds ``max_side`` are
  resized to it (aspect kept, Lanczos) before inference, and the page says so;
* the query must have text, and at most ``max_query_chars`` characters.

Files: the uploaded image is re-encoded as PNG named by its content hash under ``work_dir``
(so the same picture twice has the same cache key), the mask PNGs go there too; nothing is
written elsewhere (Gradio's own upload cache is pointed into ``work_dir`` by ``tools/webui.py``).
"""
import hashlib
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from crseg.datasets.image_io import read_rgb
from crseg.visualization.reasonseg_visualizer import (draw_points, heatmap_overlay,
                                                      mask_overlay, place_on_view)


@dataclass
class Limits:
    """What a request may carry (see the module docstring)."""
    max_side: int = 2048
    max_pixels: int = 120_000_000
    max_query_chars: int = 2000


class RequestError(ValueError):
    """A bad request; its message is shown in the page."""


def check_query(query: Optional[str], limits: Limits) -> str:
    text = (query or '').strip()
    if not text:
        raise RequestError('The query is empty: type what to segment, e.g. '
                           '"the thing you would sit on while reading".')
    if len(text) > limits.max_query_chars:
        raise RequestError(f'The query is {len(text)} characters ({len(text.split())} words); '
                           f'at most {limits.max_query_chars} characters are accepted.')
    return text


def load_image(path: Optional[str], limits: Limits,
               work_dir: str) -> Tuple[str, str, np.ndarray]:
    """Read, check, maybe resize, and store the upload as ``<sha1>.png``;
    -> (stored path, note, the RGB pixels stored).

    Pixels come from :func:`crseg.datasets.image_io.read_rgb`, the reader of the datasets and
    ``tools/demo.py`` (EXIF orientation applied, 16-bit scaled, ...), so an upload the model sees
    unresized is the array ``tools/demo.py`` and ``tools/test.py`` give the same file."""
    if not path:
        raise RequestError('No image: upload a picture (PNG, JPEG, ...) first.')
    name = osp.basename(path)
    Image.MAX_IMAGE_PIXELS = limits.max_pixels  # PIL's bomb check, at our bound
    size = None
    try:
        with Image.open(path) as im:  # the header only: refuse huge images before decoding
            size = im.size
    except UnidentifiedImageError:
        pass  # not for Pillow; the reader below may still decode it (OpenCV formats)
    except (Image.DecompressionBombError, OSError) as err:
        raise RequestError(f'{name} is not an image this demo can read ({err}).') from err
    if size is not None and size[0] * size[1] > limits.max_pixels:
        raise RequestError(f'{name} is {size[0]} x {size[1]} pixels; at most '
                           f'{limits.max_pixels:,} pixels are accepted.')
    try:
        pixels = read_rgb(path)
    except ValueError as err:
        raise RequestError(f'{name} is not an image this demo can read ({err}).') from err
    h, w = pixels.shape[:2]
    if w * h > limits.max_pixels:
        raise RequestError(f'{name} is {w} x {h} pixels; at most '
                           f'{limits.max_pixels:,} pixels are accepted.')
    rgb = Image.fromarray(pixels)
    note = ''
    if max(rgb.size) > limits.max_side:
        rgb.thumbnail((limits.max_side, limits.max_side), Image.LANCZOS)
        pixels = np.asarray(rgb)
        note = (f'The image ({w} x {h}) was resized to {rgb.size[0]} x {rgb.size[1]} '
                f'(longer side at most {limits.max_side} px).')
    digest = hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()[:16]
    out = osp.join(work_dir, 'images', f'{digest}.png')
    if not osp.exists(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
        rgb.save(out)
    return out, note, pixels


def response_spans(text: str, answer_span: Optional[Tuple[int, int]]) -> List[tuple]:
    """The response as (text, label) pieces for ``gr.HighlightedText``: the answer labelled."""
    if not text:
        return []
    if not answer_span or answer_span[1] <= answer_span[0]:
        return [(text, None)]
    a, b = answer_span
    return [(p, lab) for p, lab in ((text[:a], None), (text[a:b], 'answer'), (text[b:], None))
            if p]


def render(image: np.ndarray, sample) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask overlay, heat-map with points, mask 0/255) for one predicted sample."""
    meta = sample.metainfo
    mask = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
    h, w = image.shape[:2]
    heat = image.copy()
    coarse = sample.get('coarse_logits')
    if coarse is not None:
        c = coarse.data[0].float().cpu().numpy()
        if meta.get('mllm_view'):
            c = place_on_view(c, meta['mllm_view'], meta.get('img_shape', (h, w)))
        heat = heatmap_overlay(image, c)
    shape = meta.get('img_shape', (h, w))
    sx, sy = w / shape[1], h / shape[0]
    pts = [(x * sx, y * sy) for x, y in meta.get('points', [])]
    heat = draw_points(heat, pts, meta.get('point_labels', []))
    return mask_overlay(image, mask), heat, mask * 255


def timing_text(t: dict, note: str = '') -> str:
    cache = {True: 'reused from the cache (same image as before)',
             False: 'computed (first time this image is seen)',
             None: 'no cache in this refiner'}[t.get('embedding_cached')]
    lines = [f"reasoning (generation): {t['reasoning']:.3f} s",
             f"EAP (answer rows, coarse map, points): {t['eap']:.3f} s",
             f"refinement: {t['refine']:.3f} s; image embedding {cache}",
             f"total: {t['total']:.3f} s"]
    return '\n'.join(lines + ([note] if note else []))


class WebDemo:
    """The request handler behind the page (no Gradio in here, so it is testable alone)."""

    def __init__(self, inferencer, work_dir: str, limits: Limits = Limits()):
        self.inferencer, self.work_dir, self.limits = inferencer, work_dir, limits
        self.glcot = getattr(inferencer.model, 'glcot', None)
        self.count = 0

    def __call__(self, image_path: Optional[str], query: Optional[str]) -> dict:
        text = check_query(query, self.limits)
        path, note, image = load_image(image_path, self.limits, self.work_dir)
        sample = self.inferencer(path, text)
        overlay, heat, mask = render(image, sample)
        self.count += 1
        mask_path = osp.join(self.work_dir, 'masks', f'mask_{self.count:05d}.png')
        os.makedirs(osp.dirname(mask_path), exist_ok=True)
        Image.fromarray(mask).save(mask_path)
        meta = sample.metainfo
        response = meta.get('pred_text', '') or ''
        span, fallback, parts = None, meta.get('glcot_fallback'), {}
        if self.glcot is not None and response:
            parsed = self.glcot.parse(response)
            span, fallback = parsed.answer_span, parsed.fallback
            parts = dict(scene=parsed.global_text, region=parsed.local_text,
                         answer=parsed.answer)
        outcomes = {k: v for k, v in (meta.get('outcomes') or {}).items() if v}
        return dict(overlay=overlay, heat=heat, mask_path=mask_path,
                    response=response_spans(response, span), parts=parts,
                    answer=meta.get('pred_answer', '') or '',
                    parser='parsed' if not fallback else f'fell back: {fallback}',
                    outcomes=outcomes, timings=timing_text(meta['timings'], note),
                    mask_pixels=int((mask > 0).sum()))


def build_app(demo: WebDemo, examples: Sequence[Tuple[str, str]] = (), title: str = 'crseg'):
    """The Gradio Blocks page around ``demo`` (call ``.queue().launch()`` on it)."""
    import gradio as gr

    def run(image_path, query):
        try:
            r = demo(image_path, query)
        except RequestError as err:
            raise gr.Error(str(err))
        parts = '\n\n'.join(f'**{k}:** {v}' for k, v in r['parts'].items())
        status = r['parser'] + (f"; outcomes: {r['outcomes']}" if r['outcomes'] else '')
        return (r['overlay'], r['mask_path'], r['heat'], r['response'],
                parts or '(no GLCoT parts)', r['answer'],
                status, r['timings'])

    with gr.Blocks(title=title) as app:
        gr.Markdown(f'# {title}: reasoning segmentation\nUpload an image, ask for a target '
                    'in words, press **Segment**.')
        with gr.Row():
            with gr.Column():
                image = gr.File(label='Image', file_types=['image'], type='filepath',
                                elem_id='image')
                query = gr.Textbox(label='Query', lines=2, elem_id='query',
                                   placeholder='the thing you would sit on while reading')
                button = gr.Button('Segment', variant='primary', elem_id='submit')
                if examples:
                    gr.Examples([list(e) for e in examples], inputs=[image, query],
                                label='SynthReason val examples')
            with gr.Column():
                overlay = gr.Image(label='Mask', type='numpy', elem_id='mask', height=320)
                mask_file = gr.File(label='Mask PNG', elem_id='mask_png')
                heat = gr.Image(label='EAP heat-map and points (green +, red -)', type='numpy',
                                elem_id='heat', height=320)
        with gr.Row():
            response = gr.HighlightedText(label='GLCoT response (answer highlighted)',
                                          elem_id='response')
            parts = gr.Markdown(elem_id='parts')
        with gr.Row():
            answer = gr.Textbox(label='Parsed answer', elem_id='answer')
            status = gr.Textbox(label='Parser', elem_id='parser')
            timings = gr.Textbox(label='Time', lines=5, elem_id='timings')
        button.click(run, inputs=[image, query],
                     outputs=[overlay, mask_file, heat, response, parts, answer, status,
                              timings], api_name='segment')
    return app


__all__ = ['Limits', 'RequestError', 'WebDemo', 'build_app', 'check_query', 'load_image',
           'render', 'response_spans', 'timing_text']
