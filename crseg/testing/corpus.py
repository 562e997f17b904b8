"""Text corpora for the tiny models' BPE tokenizers (``tools/misc/make_tiny_mllm.py``,
``tools/misc/demo_steps.py``)."""
import glob
import os.path as osp
from typing import List

from crseg.datasets.reasonseg import read_json  # UTF-8, cp1252 fallback (as the dataset)


def load_corpus(path: str) -> List[str]:
    """All query and GLCoT strings of a ReasonSeg folder, or the lines of a .txt file."""
    if osp.isdir(path):
        texts = []
        files = sorted(glob.glob(osp.join(path, '**', '*.json'), recursive=True))
        for file in files:
            data = read_json(file)
            if not isinstance(data, dict):
                raise ValueError(f'{file}: expected a JSON object, got {type(data).__name__}')
            texts += [t for t in data.get('text', []) if isinstance(t, str)]
            for entry in data.get('glcot', []) or []:
                if isinstance(entry, dict):
                    texts += [v for v in entry.values() if isinstance(v, str)]
        if not texts:
            raise ValueError(f'--corpus {path}: no text found in {len(files)} JSON files')
        return texts
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            texts = [line.strip() for line in f if line.strip()]
        if not texts:
            raise ValueError(f'--corpus {path}: empty text file')
        return texts
    raise FileNotFoundError(f'--corpus {path}: no such file or folder')
