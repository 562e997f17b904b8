# LISA-style baseline on the CR-Seg tiny default's parts: the same tiny LLaVA folder and the
# same tiny SAM arch/settings (read from the CR-Seg base, not repeated). A [SEG] token is added
# to the tokenizer; its last hidden state, projected by an MLP to SAM's prompt width, is SAM's
# sparse prompt. Losses: LM + BCE/Dice on SAM's mask. Protocol: LISA's (the code default:
# LISA's questions by is_sentence, "[SEG]" answers, one teacher-forced forward at test time);
# glcot and max_new_tokens serve protocol='generate' ("answer: <answer> [SEG]", generation).
_base_ = ['./crseg_tinyllava_tinysam.py']
model = dict(
    _delete_=True,
    type='SegTokenSegmentor',
    data_preprocessor=dict(type='ReasonSegDataPreprocessor'),
    mllm={{_base_.model.mllm}},
    refiner={{_base_.model.refiner}},
    glcot=dict(type='GLCoT', mode='plain'),
    seg_token='[SEG]',
    max_new_tokens=24,
    loss_weights=dict(lm=1.0, mask=1.0))
