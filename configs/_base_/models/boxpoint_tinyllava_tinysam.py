# Seg-Zero / VisionReasoner-style baseline on the CR-Seg tiny default's parts (same tiny LLaVA
# folder, same tiny SAM arch/settings). The MLLM writes
# <think>...</think><answer>[{"bbox_2d": [x1, y1, x2, y2], "point_2d": [x, y]}]</answer>
# in pixels of the input image; SAM gets each box + point. Trained supervised: LM loss on the
# target built from the GT mask (think = GLCoT global + local), and SAM's trainable parts on
# the GT box + point prompts (the tiny SAM starts random; set mask=0 for a pretrained SAM).
_base_ = ['./crseg_tinyllava_tinysam.py']
model = dict(
    _delete_=True,
    type='BoxPointPromptSegmentor',
    data_preprocessor=dict(type='ReasonSegDataPreprocessor'),
    mllm={{_base_.model.mllm}},
    refiner={{_base_.model.refiner}},
    use_glcot_think=True,
    max_new_tokens=192,
    loss_weights=dict(lm=1.0, mask=1.0))
