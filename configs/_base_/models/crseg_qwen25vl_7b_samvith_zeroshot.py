# Training-free CR-Seg with a frozen Qwen2.5-VL-7B-Instruct (no LoRA) and SAM ViT-H; the rest
# as the LLaVA-1.5 one. Local copy: Qwen/Qwen2.5-VL-7B-Instruct -> data/weights/Qwen2.5-VL-7B-Instruct
_base_ = ['./crseg_llava15_7b_samvith_zeroshot.py']
model = dict(
    mllm=dict(_delete_=True, type='Qwen2VLAdapter',
              pretrained='data/weights/Qwen2.5-VL-7B-Instruct', torch_dtype='bfloat16',
              attn_implementation='sdpa', freeze=True, max_new_tokens=192))
