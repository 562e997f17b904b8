# CR-Seg with Qwen2.5-VL-7B-Instruct (LoRA, base frozen) and SAM ViT-H. Local copies:
#   Qwen/Qwen2.5-VL-7B-Instruct ->  data/weights/Qwen2.5-VL-7B-Instruct
#   sam_vit_h_4b8939.pth        ->  data/weights/sam_vit_h_4b8939.pth
_base_ = ['./crseg_llava15_7b_samvith.py']
model = dict(
    mllm=dict(_delete_=True, type='Qwen2VLAdapter',
              pretrained='data/weights/Qwen2.5-VL-7B-Instruct',
              torch_dtype='bfloat16', attn_implementation='sdpa', freeze=True,
              lora=dict(r=8, alpha=16, dropout=0.05),  # on the LLM's q/k/v/o (adapter default)
              max_new_tokens=192, answer_token_weight=2.0, gradient_checkpointing=True),
    capture=dict(layers=[10, 12, 14, 16, 18, 20, 22, 24]))
