# Lever (README "Levers measured"): the GLCoT scene line in reading order, not the generator's
# drawing order (CanonicalSceneOrder), in stage 2; stage 1 is
# crseg_tinyllava_tinysam_sortedscene_align_synthreason.py. Otherwise the tiny default.
_base_ = ['./crseg_tinyllava_tinysam_synthreason.py',
          '../_base_/datasets/synthreason_sortedscene_pipeline.py']
train_dataloader = dict(dataset=dict(pipeline={{_base_.sortedscene_train_pipeline}}))
