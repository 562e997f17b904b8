# CR-Seg, InternVL3-8B (-hf) + SAM ViT-H, 10k iterations on ReasonSeg: the Qwen2.5-VL-7B config
# with the MLLM swapped (same LoRA / freezing / capture layers: both LLMs are 28-layer Qwen2.5).
# The processor tiles (up to 12 crops + thumbnail); the adapter assembles one map per image.
# Local copy: OpenGVLab/InternVL3-8B-hf -> data/weights/InternVL3-8B-hf
_base_ = ['./crseg_qwen25vl_7b_samvith_10k_reasonseg.py']
model = dict(mllm=dict(type='InternVLAdapter', pretrained='data/weights/InternVL3-8B-hf'))
