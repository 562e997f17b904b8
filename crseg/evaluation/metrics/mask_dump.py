"""MaskDumpMetric: writes each predicted mask as a PNG (``tools/test.py --out``)."""
import os
import os.path as osp

import numpy as np
from mmengine.evaluator import BaseMetric
from PIL import Image

from crseg.registry import METRICS


@METRICS.register_module()
class MaskDumpMetric(BaseMetric):
    """Save ``pred_sem_seg`` of every sample to ``out_dir`` (0/255 PNG).

    File names come from the image name plus the sample index, so several
    queries on one image never overwrite each other. Reports the count.
    """

    def __init__(self, out_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.out_dir = out_dir
        os.makedirs(out_dir, exist_ok=True)

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze(0).cpu().numpy()
            stem = osp.splitext(osp.basename(sample.get('img_path') or 'sample'))[0]
            name = f"{stem}_{sample.get('sample_idx', len(self.results))}.png"
            Image.fromarray((pred > 0).astype(np.uint8) * 255).save(osp.join(self.out_dir, name))
            self.results.append(name)

    def compute_metrics(self, results):
        return dict(num_masks_written=len(results))
