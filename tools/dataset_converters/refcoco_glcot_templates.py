"""GLCoT targets for RefCOCO / RefCOCO+ / RefCOCOg without a teacher: a template sidecar.

    python tools/dataset_converters/refcoco_glcot_templates.py --data-root data/refer_seg \
        --dataset refcoco --out data/glcot/refcoco_train.jsonl [--splits train] \
        [--split-by unc] [--answer category|expression]

The refer files know each referred object's COCO category (``instances.json``), so every
(image, sentence) gets, in the sidecar format of ``crseg/datasets/glcot_sidecar.py``:

* ``global`` ("scene:"): the categories present in the image, most frequent first, with counts,
  e.g. ``The image contains: person x3, dog, frisbee.``
* ``local`` ("region:"): the referring expression, tied to its object's category, e.g.
  ``the person referred to as "man on the left".``
* ``answer``: the category name (default; e.g. ``person``) or, with ``--answer expression``, the
  referring expression itself.

Records carry ``source: "refcoco-template"``. When one image has the same sentence for two
objects whose templates differ (one id, two targets), neither is written: the dataset then skips
both queries and counts them, instead of training one of them on the other's answer. The file is
written to a temporary name and renamed, so it is either complete or absent.
"""
import argparse
import json
import os
import os.path as osp
import sys
from collections import Counter

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from crseg.datasets.glcot_sidecar import sidecar_record  # noqa: E402
from crseg.datasets.refcoco import DEFAULT_SPLIT_BY, SPLITS, load_refs  # noqa: E402

ANSWERS = ('category', 'expression')


def scene_text(category_counts: Counter) -> str:
    """``The image contains: person x3, dog.`` (most frequent first, then by name)."""
    items = sorted(category_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return 'The image contains: ' + ', '.join(
        name if n == 1 else f'{name} x{n}' for name, n in items) + '.'


def template_glcot(categories_in_image: Counter, category: str, expression: str,
                   answer: str = 'category') -> dict:
    """The three GLCoT parts of one referring expression (see the module docstring)."""
    if answer not in ANSWERS:
        raise ValueError(f'--answer must be one of {ANSWERS}, got {answer!r}')
    expression = ' '.join(expression.split())
    return {'global': scene_text(categories_in_image),
            'local': f'the {category} referred to as "{expression}".',
            'answer': category if answer == 'category' else expression}


def read_refer(data_root: str, dataset: str, split_by: str):
    """(refs, images by id, annotations by id, category names by id, instances path)."""
    refs_path = osp.join(data_root, dataset, f'refs({split_by}).p')
    inst_path = osp.join(data_root, dataset, 'instances.json')
    for p in (refs_path, inst_path):
        if not osp.isfile(p):
            raise FileNotFoundError(f'{p} not found (refer layout: <data-root>/<dataset>/'
                                    f'refs({split_by}).p + instances.json)')
    with open(inst_path, encoding='utf-8') as f:
        inst = json.load(f)
    if not inst.get('categories'):
        raise ValueError(f'{inst_path}: no "categories" (needed for the category names)')
    cats = {c['id']: c['name'] for c in inst['categories']}
    images = {im['id']: im for im in inst.get('images', [])}
    anns = {a['id']: a for a in inst.get('annotations', [])}
    return load_refs(refs_path), images, anns, cats, inst_path


def build_records(data_root: str, dataset: str, split_by: str, splits, answer: str):
    """Sidecar records of the refs in ``splits`` and the number of conflicting ids left out."""
    refs, images, anns, cats, inst_path = read_refer(data_root, dataset, split_by)
    per_image = {}
    for a in anns.values():
        if a['category_id'] not in cats:
            raise ValueError(f'{inst_path}: annotation {a["id"]} has category_id '
                             f'{a["category_id"]}, which is not in "categories"')
        per_image.setdefault(a['image_id'], Counter())[cats[a['category_id']]] += 1
    records = {}
    for ref in refs:
        if ref.get('split') not in splits:
            continue
        ann, image = anns.get(ref['ann_id']), images.get(ref['image_id'])
        if ann is None or image is None:
            raise ValueError(f'{inst_path}: ref_id {ref.get("ref_id")} names ann_id '
                             f'{ref["ann_id"]} / image_id {ref["image_id"]}, not in the file')
        for sent in ref.get('sentences', []):
            glcot = template_glcot(per_image[image['id']], cats[ann['category_id']],
                                   sent['sent'], answer)
            rec = sidecar_record(image['file_name'], sent['sent'], glcot,
                                 source='refcoco-template')
            records.setdefault(rec['id'], []).append(rec)
    kept = [recs[0] for recs in records.values()
            if all(r['glcot'] == recs[0]['glcot'] for r in recs)]
    return kept, len(records) - len(kept)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', required=True, help='folder holding <dataset>/refs(*).p')
    p.add_argument('--dataset', required=True, choices=sorted(DEFAULT_SPLIT_BY))
    p.add_argument('--split-by', default=None, help='unc / umd / google (default by dataset)')
    p.add_argument('--splits', nargs='+', default=['train'])
    p.add_argument('--answer', choices=ANSWERS, default='category')
    p.add_argument('--out', required=True, help='the sidecar JSONL to write')
    args = p.parse_args(argv)
    args.split_by = args.split_by or DEFAULT_SPLIT_BY[args.dataset]
    bad = [s for s in args.splits if s not in SPLITS.get(args.split_by, ())]
    if bad:
        p.error(f'--splits {bad} are not splits of {args.dataset} ({args.split_by}): '
                f'{SPLITS.get(args.split_by)}')
    return args


def main(argv=None):
    args = parse_args(argv)
    records, conflicts = build_records(args.data_root, args.dataset, args.split_by,
                                       set(args.splits), args.answer)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + '\n')
    os.replace(tmp, args.out)
    print(f'{args.out}: {len(records)} template records for {args.dataset}({args.split_by}) '
          f'{"/".join(args.splits)}; {conflicts} ids left out (one sentence, two different '
          'targets in the same image)')
    return records, conflicts


if __name__ == '__main__':
    main()
