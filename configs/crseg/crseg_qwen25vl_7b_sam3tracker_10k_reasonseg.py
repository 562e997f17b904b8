# CR-Seg, Qwen2.5-VL-7B + SAM 3's tracker (transformers Sam3TrackerModel: point / box / mask
# prompts), 10k iterations on ReasonSeg: the SAM ViT-H config with the refiner swapped.
# facebook/sam3 -> data/weights/sam3 (Sam3TrackerModel reads its tracker part).
_base_ = ['./crseg_qwen25vl_7b_samvith_10k_reasonseg.py']
model = dict(refiner=dict(_delete_=True, type='Sam3TrackerRefiner', pretrained='data/weights/sam3'))
