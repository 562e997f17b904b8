# LISA-style training mix: ReasonSeg train + RefCOCO / RefCOCO+ / RefCOCOg train, each with its
# GLCoT sidecar in data/glcot/ (README: "Train on real data"); val and test on ReasonSeg.
# Ratios: LISA's HybridDataset picks a task with sample_rate [9, 3, 3, 1] (sem_seg, refer_seg, vqa,
# reason_seg), then a refer dataset uniformly. Keeping refer_seg and reason_seg, with refer_seg's 3
# spread evenly over refcoco / refcoco+ / refcocog (refclef is not used here), gives 1:1:1:1.
_base_ = ['./reasonseg.py']

refer_train = dict(type='RefCOCODataset', data_root='data/refer_seg', split='train',
                   pipeline=_base_.train_pipeline)
train_dataloader = dict(
    sampler=dict(_delete_=True, type='DatasetRatioSampler', ratios=[1, 1, 1, 1]),
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        _base_.train_dataloader.dataset,
        dict(refer_train, dataset='refcoco', glcot_file=f'{_base_.glcot_root}/refcoco_train.jsonl'),
        dict(refer_train, dataset='refcoco+',
             glcot_file=f'{_base_.glcot_root}/refcoco+_train.jsonl'),
        dict(refer_train, dataset='refcocog',
             glcot_file=f'{_base_.glcot_root}/refcocog_train.jsonl'),
    ]))
