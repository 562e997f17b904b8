# The smallest honest config: mmseg's EncoderDecoder (a 2-stage UNet) trained
# a few iterations on crseg's RandomShapesDataset, evaluated with mmseg's
# IoUMetric. It mixes crseg and mmseg components under default_scope='crseg'
# and is what the tests use to check train -> kill -> --resume -> test.
_base_ = ['../_base_/default_runtime.py', '../_base_/schedules/schedule_smoke.py']

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0, 0.0, 0.0],
                           std=[255.0, 255.0, 255.0], bgr_to_rgb=False, size=(32, 32)),
    backbone=dict(type='UNet', in_channels=3, base_channels=8, num_stages=2,
                  strides=(1, 1), enc_num_convs=(1, 1), dec_num_convs=(1,),
                  downsamples=(True,), enc_dilations=(1, 1), dec_dilations=(1,),
                  norm_cfg=norm_cfg, upsample_cfg=dict(type='InterpConv')),
    decode_head=dict(type='FCNHead', in_channels=8, channels=8, num_convs=1,
                     num_classes=2, in_index=-1, concat_input=False, dropout_ratio=0.0,
                     norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

pipeline = [dict(type='LoadImageFromNDArray'), dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='RandomShapesDataset', num_samples=8, seed=0, pipeline=pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='RandomShapesDataset', num_samples=4, seed=1, pipeline=pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
