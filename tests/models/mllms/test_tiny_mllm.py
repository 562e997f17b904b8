"""Offline tokenizer / processor builders and the make_tiny_mllm CLI."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

from crseg.testing import train_bpe_tokenizer

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))


def _load_cli():
    spec = importlib.util.spec_from_file_location(
        'make_tiny_mllm', osp.join(ROOT, 'tools', 'misc', 'make_tiny_mllm.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bpe_tokenizer_specials_and_round_trip():
    tok = train_bpe_tokenizer(['the red cup is on the table', 'where is the lamp?'],
                              ['<image>'], vocab_size=300, bos_token='<s>')
    text = 'where is the red cup?'
    assert tok.decode(tok(text, add_special_tokens=False)['input_ids']) == text
    ids = tok('a <image> b', add_special_tokens=False)['input_ids']
    assert tok.convert_tokens_to_ids('<image>') in ids
    assert tok.pad_token == '<pad>' and tok.eos_token == '</s>' and tok.bos_token == '<s>'
    with pytest.raises(ValueError, match='no non-empty text'):
        train_bpe_tokenizer(['', '  '], ['<image>'])


def test_processors_reload_offline(adapter_llava_dir, adapter_qwen2vl_dir):
    from transformers import AutoProcessor
    p = AutoProcessor.from_pretrained(adapter_llava_dir)
    assert type(p).__name__ == 'LlavaProcessor'
    assert p.image_processor.crop_size['height'] == 224
    q = AutoProcessor.from_pretrained(adapter_qwen2vl_dir)
    assert type(q).__name__ == 'Qwen2VLProcessor'
    msgs = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'hi'}]}]
    text = q.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert '<|image_pad|>' in text and text.endswith('<|im_start|>assistant\n')


def test_cli_from_reasonseg_folder_and_txt(tmp_path):
    cli = _load_cli()
    data = tmp_path / 'train'
    data.mkdir()
    (data / 'a.json').write_text(json.dumps({
        'text': ['what holds the tea?'], 'is_sentence': True, 'shapes': [],
        'glcot': [{'global': 'a kitchen', 'local': 'a mug on the desk', 'answer': 'the mug'}]}))
    texts = cli.load_corpus(str(data))
    assert texts == ['what holds the tea?', 'a kitchen', 'a mug on the desk', 'the mug']
    out = cli.main(['--family', 'llava', '--corpus', str(data), '--out',
                    str(tmp_path / 'llava')])
    from transformers import LlavaForConditionalGeneration
    model = LlavaForConditionalGeneration.from_pretrained(out)
    assert model.config.vision_config.image_size // model.config.vision_config.patch_size == 14
    txt = tmp_path / 'corpus.txt'
    txt.write_text('scene: a room\nanswer: the lamp\n')
    out = cli.main(['--family', 'qwen2_5vl', '--corpus', str(txt), '--out',
                    str(tmp_path / 'qwen25')])
    from crseg.models.mllms import Qwen2VLAdapter
    adapter = Qwen2VLAdapter(pretrained=out)
    assert adapter.hf_model.config.model_type == 'qwen2_5_vl'
    with pytest.raises(FileNotFoundError, match='nope'):
        cli.load_corpus(str(tmp_path / 'nope'))
    assert torch.isfinite(next(adapter.hf_model.parameters())).all()
