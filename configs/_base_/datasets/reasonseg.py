# ReasonSeg (LISA's release): data/reason_seg/ReasonSeg/{train,val,test}/*.jpg + *.json.
# Validation/test use each image's first query (LISA's protocol); set
# `first_text_only=False` to evaluate every query. Flip stays off: "left of" queries.
# Training targets ({global, local, answer} per query) come from a GLCoT sidecar written by
# tools/dataset_converters/glcot_annotate.py (README: "Train on real data").
dataset_type = 'ReasonSegDataset'
data_root = 'data/reason_seg/ReasonSeg'
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
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 first_text_only=False, glcot_file=f'{glcot_root}/reasonseg_train.jsonl',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 first_text_only=True, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 first_text_only=True, pipeline=test_pipeline))
val_evaluator = dict(type='ReasonSegMetric', protocol='lisa')
test_evaluator = val_evaluator
