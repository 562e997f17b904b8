"""RandomShapesDataset: a few seeded random images with one filled rectangle.

The smallest honest segmentation data: no files, deterministic for a seed,
a real (learnable) foreground. Used by smoke configs that exercise the
train / resume / test tooling without any download.
"""
import numpy as np
from mmseg.datasets import BaseSegDataset

from crseg.registry import DATASETS


@DATASETS.register_module()
class RandomShapesDataset(BaseSegDataset):
    """``num_samples`` images of ``img_size`` with a bright rectangle (label 1)."""

    METAINFO = dict(classes=('background', 'target'), palette=[[0, 0, 0], [255, 0, 0]])

    def __init__(self, num_samples: int = 8, img_size: int = 32, seed: int = 0, **kwargs):
        if num_samples < 1 or img_size < 8:
            raise ValueError(f'RandomShapesDataset needs num_samples >= 1 and img_size >= 8, '
                             f'got num_samples={num_samples}, img_size={img_size}')
        self.num_samples, self.img_size, self.seed = num_samples, img_size, seed
        kwargs.setdefault('lazy_init', False)
        super().__init__(data_root='', img_suffix='', seg_map_suffix='', **kwargs)

    def load_data_list(self):
        rng = np.random.default_rng(self.seed)
        s = self.img_size
        data_list = []
        for i in range(self.num_samples):
            img = rng.integers(0, 60, size=(s, s, 3), dtype=np.uint8)
            seg = np.zeros((s, s), dtype=np.uint8)
            x0, y0 = rng.integers(0, s // 2, size=2)
            w, h = rng.integers(s // 4, s // 2, size=2)
            img[y0:y0 + h, x0:x0 + w] = rng.integers(150, 255, size=3, dtype=np.uint8)
            seg[y0:y0 + h, x0:x0 + w] = 1
            data_list.append(dict(img=img, gt_seg_map=seg, img_path=f'random_shapes_{i}.png',
                                  seg_map_path=None, label_map=None, reduce_zero_label=False,
                                  seg_fields=['gt_seg_map'], sample_idx=i))
        return data_list
