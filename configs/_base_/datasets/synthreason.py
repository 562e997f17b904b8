# SynthReason: the procedural reasoning world (tools/dataset_converters/synthreason.py).
# `make demo` generates it into data/synthreason when missing.
dataset_type = 'ReasonSegDataset'
data_root = 'data/synthreason'

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadReasonSegAnnotations'),
    dict(type='PackReasonSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadReasonSegAnnotations'),
    dict(type='PackReasonSegInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 first_text_only=False, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 first_text_only=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ReasonSegMetric', protocol='lisa')
test_evaluator = val_evaluator
