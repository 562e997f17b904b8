# CR-Seg with LLaVA-1.5-7B (LoRA on the language model, base frozen) and SAM ViT-H
# (image encoder frozen, mask decoder trained). Point the two paths at local copies:
#   llava-hf/llava-1.5-7b-hf  ->  data/weights/llava-1.5-7b-hf
#   sam_vit_h_4b8939.pth      ->  data/weights/sam_vit_h_4b8939.pth
# Channels of the coarse head = captured layers x heads, read from the MLLM config.
model = dict(
    type='CRSeg',
    data_preprocessor=dict(type='ReasonSegDataPreprocessor'),
    mllm=dict(type='LlavaAdapter', pretrained='data/weights/llava-1.5-7b-hf',
              torch_dtype='bfloat16', attn_implementation='sdpa', freeze=True,
              lora=dict(r=8, alpha=16, dropout=0.05),  # on the LLM's q/k/v/o (adapter default)
              max_new_tokens=192, answer_token_weight=2.0, gradient_checkpointing=True),
    glcot=dict(type='GLCoT', mode='glcot'),
    capture=dict(layers=[12, 14, 16, 18, 20, 22, 24, 26], heads='all', rows='answer'),
    coarse_head=dict(type='EAPCoarseHead', channels=64, upsample=4, num_convs=2),
    point_sampler=dict(type='PointSampler', num_pos=2, num_neg=1, min_distance=3),
    refiner=dict(type='SAMRefiner',  # arch: read from the checkpoint (vit_b/l/h)
                 checkpoint='data/weights/sam_vit_h_4b8939.pth',
                 train_decoder=True, multimask_output=True),
    loss_weights=dict(lm=1.0, coarse=1.0, mask=1.0))
