"""ReasonSegVisualizer: one picture per prediction, for tools/demo.py and --show-dir.

Panels, left to right: the image with the ground truth outline (when known);
the EAP coarse heat-map with the sampled points (green positive, red
negative); the refined mask. Below them: the query, the MLLM's response (the
GLCoT text) and the parsed answer.

Under a launcher every process draws its own share of the test set: the file backends
(``LocalVisBackend``) write the pictures of every process (mmengine's ``add_image`` writes
those of the main process only, so a 2-process ``--show-dir`` lost half of them); other
backends (TensorBoard, W&B) get the main process's pictures.
"""
import textwrap
from typing import Optional

import cv2
import numpy as np
from mmengine.dist import is_main_process
from mmengine.visualization import LocalVisBackend
from mmseg.visualization import SegLocalVisualizer

from crseg.registry import VISUALIZERS


def _to_np(x) -> Optional[np.ndarray]:
    if x is None:
        return None
    data = x.data if hasattr(x, 'data') else x
    return data.detach().float().cpu().numpy().squeeze()


def heatmap_overlay(img: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Blend a jet heat-map of ``heat`` (any size, any range) over RGB ``img``."""
    h, w = img.shape[:2]
    heat = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    lo, hi = np.nanmin(heat), np.nanmax(heat)
    norm = np.zeros_like(heat) if not np.isfinite(hi - lo) or hi - lo < 1e-8 \
        else (heat - lo) / (hi - lo)
    colour = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (0.5 * img + 0.5 * colour).astype(np.uint8)


def place_on_view(coarse: np.ndarray, view: dict, img_shape) -> np.ndarray:
    """A coarse map on the MLLM's grid placed on the box it covers (``mllm_view``, in the
    ``img_shape`` frame); the unseen rest gets the map's minimum."""
    import torch

    from crseg.models.mllms.geometry import ImageGeometry
    H, W = (int(v) for v in img_shape[:2])
    g = ImageGeometry(tuple(coarse.shape[-2:]), tuple(view['box']), (H, W))
    return g.place(torch.from_numpy(coarse)[None], (H, W))[0][0].numpy()


def mask_overlay(img: np.ndarray, mask: np.ndarray, colour=(255, 40, 40)) -> np.ndarray:
    out = img.copy()
    m = mask > 0
    out[m] = (0.45 * out[m] + 0.55 * np.array(colour)).astype(np.uint8)
    return out


def draw_points(img: np.ndarray, points, labels) -> np.ndarray:
    out = img.copy()
    radius = max(3, img.shape[0] // 60)
    for (x, y), lab in zip(points or [], labels or []):
        if lab < 0:
            continue
        colour = (0, 230, 0) if lab == 1 else (230, 0, 0)
        cv2.circle(out, (int(round(x)), int(round(y))), radius, colour, -1)
        cv2.circle(out, (int(round(x)), int(round(y))), radius, (255, 255, 255), 1)
    return out


def text_band(lines, width: int, line_px: int = 18) -> np.ndarray:
    chars = max(20, width // 8)
    wrapped = [w for line in lines for w in (textwrap.wrap(line, chars) or [''])]
    band = np.full((line_px * len(wrapped) + 8, width, 3), 255, np.uint8)
    for i, line in enumerate(wrapped):
        cv2.putText(band, line, (4, line_px * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return band


def render_prediction(image: np.ndarray, sample) -> np.ndarray:
    """The picture for one predicted ``SegDataSample`` (``image`` RGB, original size)."""
    meta = sample.metainfo
    h, w = image.shape[:2]
    left = image.copy()
    gt = _to_np(sample.get('gt_sem_seg'))
    if gt is not None and gt.shape == (h, w):
        contours, _ = cv2.findContours((gt == 1).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(left, contours, -1, (255, 255, 0), 2)
    coarse = _to_np(sample.get('coarse_logits'))
    if coarse is not None and coarse.ndim == 2 and meta.get('mllm_view'):
        coarse = place_on_view(coarse, meta['mllm_view'], meta.get('img_shape', (h, w)))
    middle = heatmap_overlay(image, coarse) if coarse is not None else image.copy()
    scale = (w / meta['img_shape'][1], h / meta['img_shape'][0]) \
        if 'img_shape' in meta else (1.0, 1.0)
    pts = [(x * scale[0], y * scale[1]) for x, y in meta.get('points', [])]
    middle = draw_points(middle, pts, meta.get('point_labels', []))
    pred = _to_np(sample.get('pred_sem_seg'))
    right = mask_overlay(image, pred) if pred is not None else image.copy()
    panels = np.concatenate([left, middle, right], axis=1)
    lines = [f"query: {meta.get('query', '')}",
             f"response: {meta.get('pred_text', '')}",
             f"answer: {meta.get('pred_answer', '')}"]
    return np.concatenate([panels, text_band(lines, panels.shape[1])], axis=0)


@VISUALIZERS.register_module()
class ReasonSegVisualizer(SegLocalVisualizer):
    """Draws :func:`render_prediction` pictures through mmengine's vis backends."""

    def add_datasample(self, name, image, data_sample=None, draw_gt=True, draw_pred=True,
                       show=False, wait_time=0, out_file=None, step=0, **kwargs):
        if data_sample is None:
            drawn = image
        else:
            drawn = render_prediction(image, data_sample)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            cv2.imwrite(out_file, drawn[..., ::-1])
        else:
            self.add_image(name, drawn, step)  # main process only
            if not is_main_process():
                for backend in self._vis_backends.values():
                    if isinstance(backend, LocalVisBackend):
                        backend.add_image(name, drawn, step)
