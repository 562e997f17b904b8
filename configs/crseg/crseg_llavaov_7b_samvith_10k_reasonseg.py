# CR-Seg, LLaVA-OneVision-Qwen2-7B + SAM ViT-H, 10k iterations on ReasonSeg: the Qwen2.5-VL-7B
# recipe with the MLLM swapped (same 28-layer Qwen2 LLM, same captured layers). Local copy:
#   llava-hf/llava-onevision-qwen2-7b-ov-hf -> data/weights/llava-onevision-qwen2-7b-ov-hf
# anyres: up to 3x3 tiles of 384 px + the base image (<= ~7.4k image tokens); the coarse map is
# the assembled high-res grid (README: "LLaVA-OneVision tiles"; tiles='base': the base grid).
_base_ = ['./crseg_qwen25vl_7b_samvith_10k_reasonseg.py']
model = dict(mllm=dict(type='LlavaOnevisionAdapter',
                       pretrained='data/weights/llava-onevision-qwen2-7b-ov-hf'))
