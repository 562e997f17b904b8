# Training-free CR-Seg, LLaVA-OneVision-Qwen2-7B + SAM ViT-H, on ReasonSeg val: the Qwen2.5-VL-7B
# zero-shot config with the MLLM swapped (anyres tiles, assembled map; README "LLaVA-OneVision
# tiles"). Local copy: llava-hf/llava-onevision-qwen2-7b-ov-hf -> data/weights/
_base_ = ['./crseg_qwen25vl_7b_samvith_zeroshot_reasonseg_val.py']
model = dict(mllm=dict(type='LlavaOnevisionAdapter',
                       pretrained='data/weights/llava-onevision-qwen2-7b-ov-hf'))
