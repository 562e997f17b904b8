# CR-Seg, LLaVA-1.5-7B + SAM 2.1-L (transformers Sam2Model), 10k iterations on ReasonSeg: the
# SAM ViT-H config with the refiner swapped. facebook/sam2.1-hiera-large -> data/weights/.
_base_ = ['./crseg_llava15_7b_samvith_10k_reasonseg.py']
model = dict(refiner=dict(_delete_=True, type='Sam2Refiner',
                          pretrained='data/weights/sam2.1-hiera-large'))
