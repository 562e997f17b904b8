# Training-free CR-Seg with a frozen LLaVA-1.5-7B (no LoRA) and a pretrained SAM ViT-H:
# GLCoT as a prompt -> EAP capture on the generated answer tokens -> AttentionAggregator (no
# weights) -> PointSampler peaks -> SAM prompted with the points. Nothing is trained: evaluate
# with `tools/test.py CONFIG` (no checkpoint). Local copies of the weights:
#   llava-hf/llava-1.5-7b-hf  ->  data/weights/llava-1.5-7b-hf
#   sam_vit_h_4b8939.pth      ->  data/weights/sam_vit_h_4b8939.pth
# Every head of every layer is averaged until a head selection is put after this file in a
# config's _base_ (tools/analysis_tools/select_heads.py writes one).
model = dict(
    type='AttentionOnlySegmentor',
    data_preprocessor=dict(type='ReasonSegDataPreprocessor'),
    mllm=dict(type='LlavaAdapter', pretrained='data/weights/llava-1.5-7b-hf',
              torch_dtype='bfloat16', attn_implementation='sdpa', freeze=True,
              max_new_tokens=192),
    glcot=dict(type='GLCoT', mode='glcot'),
    capture=dict(layers='all', heads='all', rows='answer'),
    coarse_head=dict(type='AttentionAggregator', mode='mean'),
    point_sampler=dict(type='PointSampler', num_pos=2, num_neg=1, min_distance=3),
    refiner=dict(type='SAMRefiner',  # arch: read from the checkpoint (vit_b/l/h)
                 checkpoint='data/weights/sam_vit_h_4b8939.pth', train_decoder=False),
    # SAM is prompted with the points only: its mask prompt expects SAM's own low-res logits,
    # not an attention z-score
    refiner_prompts=('points', ))
