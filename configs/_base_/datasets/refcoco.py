# RefCOCO / RefCOCO+ / RefCOCOg in the refer format:
#   data/refer_seg/<dataset>/refs(unc).p (refs(umd).p for refcocog) + instances.json,
#   images in data/refer_seg/images/mscoco/images/train2014/.
# Switch with --cfg-options test_dataloader.dataset.dataset=refcoco+ test_dataloader.dataset.split=testA
# Training targets: a GLCoT sidecar per dataset, data/glcot/<dataset>_train.jsonl, from the
# annotator or the teacher-free template (tools/dataset_converters/refcoco_glcot_templates.py).
dataset_type = 'RefCOCODataset'
data_root = 'data/refer_seg'
glcot_root = 'data/glcot'

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadReasonSegAnnotations'),
    dict(type='Resize', scale=(1024, 1024), keep_ratio=True),
    dict(type='PackReasonSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadReasonSegAnnotations'),
    dict(type='PackReasonSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, dataset='refcoco', split='train',
                 img_prefix='images/mscoco/images/train2014',
                 glcot_file=f'{glcot_root}/refcoco_train.jsonl', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, dataset='refcoco', split='val',
                 img_prefix='images/mscoco/images/train2014', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ReasonSegMetric', protocol='lisa')
test_evaluator = val_evaluator
