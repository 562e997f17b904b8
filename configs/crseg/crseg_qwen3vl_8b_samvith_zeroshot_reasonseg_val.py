# Training-free CR-Seg, Qwen3-VL-8B-Instruct + SAM ViT-H, on ReasonSeg val: the Qwen2.5-VL-7B
# zero-shot config with the MLLM swapped. Run: python tools/test.py THIS_CONFIG (no checkpoint)
# Local copy: Qwen/Qwen3-VL-8B-Instruct -> data/weights/Qwen3-VL-8B-Instruct
_base_ = ['./crseg_qwen25vl_7b_samvith_zeroshot_reasonseg_val.py']
model = dict(mllm=dict(type='Qwen3VLAdapter', pretrained='data/weights/Qwen3-VL-8B-Instruct'))
