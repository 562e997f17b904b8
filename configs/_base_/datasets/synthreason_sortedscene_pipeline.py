# SynthReason's train pipeline with the GLCoT scene line in reading order (CanonicalSceneOrder),
# for the reading-order lever configs (configs/crseg/*_sortedscene_*): they set
# `train_dataloader = dict(dataset=dict(pipeline={{_base_.sortedscene_train_pipeline}}))`.
sortedscene_train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color'),
    dict(type='LoadReasonSegAnnotations'),
    dict(type='CanonicalSceneOrder'),
    dict(type='PackReasonSegInputs'),
]
