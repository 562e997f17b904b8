# Stage 1 of the reading-order lever (crseg_tinyllava_tinysam_sortedscene_synthreason.py):
# the tiny default's alignment stage with the scene line in reading order.
_base_ = ['./crseg_tinyllava_tinysam_align_synthreason.py',
          '../_base_/datasets/synthreason_sortedscene_pipeline.py']
train_dataloader = dict(dataset=dict(pipeline={{_base_.sortedscene_train_pipeline}}))
