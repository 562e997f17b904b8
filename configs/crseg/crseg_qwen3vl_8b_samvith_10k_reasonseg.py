# CR-Seg, Qwen3-VL-8B-Instruct + SAM ViT-H, 10k iterations on ReasonSeg: the Qwen2.5-VL-7B
# config with the MLLM swapped (LoRA, dtype, freezing, GLCoT targets, SAM as there).
# Local copy: Qwen/Qwen3-VL-8B-Instruct -> data/weights/Qwen3-VL-8B-Instruct
_base_ = ['./crseg_qwen25vl_7b_samvith_10k_reasonseg.py']
model = dict(
    mllm=dict(type='Qwen3VLAdapter', pretrained='data/weights/Qwen3-VL-8B-Instruct'),
    # Qwen2.5-VL's layers 10..24 of 28 at the same relative depth of Qwen3-VL-8B's 36 layers
    # (round(l * 36 / 28)); a calibrated choice: tools/analysis_tools/select_heads.py
    capture=dict(layers=[13, 15, 18, 21, 23, 26, 28, 31]))
