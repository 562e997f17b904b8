# Training-free CR-Seg, InternVL3-8B (-hf) + SAM ViT-H, on ReasonSeg val: the Qwen2.5-VL-7B
# zero-shot config with the MLLM swapped. Run: python tools/test.py THIS_CONFIG (no checkpoint).
# Local copy: OpenGVLab/InternVL3-8B-hf -> data/weights/InternVL3-8B-hf
_base_ = ['./crseg_qwen25vl_7b_samvith_zeroshot_reasonseg_val.py']
model = dict(mllm=dict(type='InternVLAdapter', pretrained='data/weights/InternVL3-8B-hf'))
