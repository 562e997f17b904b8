# CR-Seg with a tiny random-init LLaVA (CLIP 128x2, patch 16 -> 14x14 image tokens; Llama
# 128x3, 4 heads) and a tiny SAM, both trained on CPU. The MLLM folder is made by
# tools/misc/make_tiny_mllm.py (a BPE tokenizer trained on the dataset's texts) and
# loaded through from_pretrained, as real weights are.
tiny_mllm_path = 'data/tiny_models/llava_synthreason'
model = dict(
    type='CRSeg',
    data_preprocessor=dict(type='ReasonSegDataPreprocessor'),
    mllm=dict(type='LlavaAdapter', pretrained=tiny_mllm_path, attn_implementation='sdpa',
              max_new_tokens=96, answer_token_weight=4.0),
    glcot=dict(type='GLCoT', mode='glcot'),
    capture=dict(layers='all', heads='all', rows='answer'),
    # in_channels is read from the MLLM config (layers x heads)
    coarse_head=dict(type='EAPCoarseHead', channels=32, upsample=4, num_convs=2),
    point_sampler=dict(type='PointSampler', num_pos=1, num_neg=1, min_distance=2),
    refiner=dict(
        type='SAMRefiner',
        arch=dict(img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=2,
                  out_chans=64, global_attn_indexes=(1, ), window_size=0,
                  decoder_mlp_dim=256, decoder_num_heads=4, iou_head_hidden_dim=64),
        checkpoint=None, train_decoder=True, train_prompt_encoder=True,
        multimask_output=False),
    loss_weights=dict(lm=1.0, coarse=1.0, mask=1.0))
