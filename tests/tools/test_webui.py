"""tools/webui.py: a real server on loopback, driven by headless Chromium and gradio_client.

The model is the tiny CR-Seg (tiny LLaVA + tiny SAM) with a checkpoint of its initial weights
saved through the checkpoint policy, so the server loads it strictly as a user's would.
The browser test needs Debian's chromium + chromium-driver (installed by .ci/run); on a
machine without them it skips and says why.
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def tiny_setup(tmp_path_factory, synth_root, tiny_llava_dir, tiny_sam_arch):
    """(config, checkpoint): the tiny CR-Seg config and a strict checkpoint of it."""
    from mmengine.registry import init_default_scope

    from crseg.registry import MODELS
    from crseg.setup_env import register_all_modules
    from crseg.utils.tool_utils import load_config
    tmp = tmp_path_factory.mktemp('webui')
    cfg_path = tmp / 'tiny_crseg.py'
    cfg_path.write_text(
        f"_base_ = ['{ROOT}/configs/crseg/crseg_tinyllava_tinysam_synthreason.py']\n"
        f"model = dict(mllm=dict(pretrained='{tiny_llava_dir}', max_new_tokens=8),\n"
        f"             coarse_head=dict(channels=8), refiner=dict(arch={tiny_sam_arch!r}))\n"
        f"data_root = '{synth_root}'\n"
        "test_dataloader = dict(dataset=dict(data_root=data_root))\n")
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    cfg = load_config(str(cfg_path))
    init_default_scope('crseg')
    model = MODELS.build(cfg.model)
    ckpt = tmp / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    return cfg_path, ckpt


@pytest.fixture(scope='module')
def server(tiny_setup, tmp_path_factory):
    cfg_path, ckpt = tiny_setup
    port = _free_port()
    work = tmp_path_factory.mktemp('webui_work')
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED='False',
               no_proxy='127.0.0.1,localhost', NO_PROXY='127.0.0.1,localhost')
    log = open(work.parent / 'webui_server.log', 'w')
    proc = subprocess.Popen([sys.executable, 'tools/webui.py', str(cfg_path), '--checkpoint',
                             str(ckpt), '--port', str(port), '--work-dir', str(work),
                             '--max-side', '512'], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
    if proc.poll() is not None:
        log.close()
        pytest.fail('webui did not start:\n' + (work.parent / 'webui_server.log').read_text())
    yield dict(url=url, work=work, proc=proc, cfg=cfg_path, ckpt=ckpt)
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _val_sample(synth_root, k=0):
    import json
    imgs = sorted((Path(synth_root) / 'val').glob('*.jpg'))
    img = imgs[k]
    query = json.loads(img.with_suffix('.json').read_text())['text'][0]
    return str(img), query


def _demo_answer(cfg, ckpt, image, query, out):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, 'tools/demo.py', image, query, '--config', str(cfg),
                        '--checkpoint', str(ckpt), '--out', str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith('answer:')][0]
    return line[len('answer:'):].strip()


def test_two_concurrent_api_requests(server, synth_root):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file
    client = Client(server['url'], verbose=False)
    jobs = [_val_sample(synth_root, 0), _val_sample(synth_root, 1)]
    assert jobs[0][0] != jobs[1][0]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(client.predict, handle_file(img), q, api_name='/segment')
                   for img, q in jobs]
        results = [f.result(timeout=600) for f in futures]
    for (img, _), res in zip(jobs, results):
        overlay, mask_png, heat, response, parts, answer, status, timings = res
        mask = np.asarray(Image.open(mask_png if isinstance(mask_png, str)
                                     else mask_png['path']))
        h, w = np.asarray(Image.open(img)).shape[:2]
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert 'reasoning (generation)' in timings and 'refinement' in timings
    # each request got its own mask file
    assert results[0][1] != results[1][1]


def test_second_query_on_same_image_reuses_embedding(server, synth_root):
    from gradio_client import Client, handle_file
    client = Client(server['url'], verbose=False)
    img, q = _val_sample(synth_root, 2)
    client.predict(handle_file(img), q, api_name='/segment')
    again = client.predict(handle_file(img), 'the object on the left', api_name='/segment')
    assert 'reused from the cache' in again[-1]


@pytest.mark.parametrize('case', ['not_image', 'empty_query', 'long_query', 'huge_image'])
def test_bad_requests_get_a_message_and_the_server_goes_on(server, synth_root, tmp_path, case):
    from gradio_client import Client, handle_file
    client = Client(server['url'], verbose=False)
    img, q = _val_sample(synth_root, 0)
    if case == 'not_image':
        bad = tmp_path / 'notes.png'
        bad.write_text('this is text, not a picture')
        args, expect = (handle_file(str(bad)), q), 'not an image'
    elif case == 'empty_query':
        args, expect = (handle_file(img), '   '), 'query is empty'
    elif case == 'long_query':
        args, expect = (handle_file(img), ' '.join(['word'] * 5000)), '5000 words'
    else:
        big = tmp_path / 'big.png'
        Image.new('RGB', (10000, 10000), (30, 60, 90)).save(big, compress_level=1)
        args, expect = (handle_file(str(big)), q), None
    if expect is None:  # documented resize: it works, and the page says so
        res = client.predict(*args, api_name='/segment')
        assert 'was resized to 512 x 512' in res[-1]
        assert np.asarray(Image.open(res[1] if isinstance(res[1], str)
                                     else res[1]['path'])).shape == (512, 512)
    else:
        with pytest.raises(Exception) as info:
            client.predict(*args, api_name='/segment')
        assert expect in str(info.value)
    ok = client.predict(handle_file(img), q, api_name='/segment')  # still serving
    assert 'total:' in ok[-1]


def test_nothing_written_outside_the_work_dir(server, synth_root):
    before = set(os.listdir(ROOT))
    from gradio_client import Client, handle_file
    img, q = _val_sample(synth_root, 3)
    Client(server['url'], verbose=False).predict(handle_file(img), q, api_name='/segment')
    assert set(os.listdir(ROOT)) == before
    assert list((server['work'] / 'masks').glob('*.png'))
    assert (server['work'] / 'gradio').is_dir()


def test_browser_upload_query_submit(server, synth_root, tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f'no {CHROMIUM} / {CHROMEDRIVER} on this machine (Debian packages chromium '
                    'chromium-driver; .ci/run installs them)')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic',
                 '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--window-size=1400,1800',
                 f'--user-data-dir={tmp_path / "chrome"}'):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    img, q = _val_sample(synth_root, 1)
    try:
        driver.get(server['url'])
        wait = WebDriverWait(driver, 300)
        upload = wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, '#image input[type=file]')))
        upload.send_keys(img)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#image .file-preview')))
        box = driver.find_element(By.CSS_SELECTOR, '#query textarea')
        box.send_keys(q)
        driver.find_element(By.CSS_SELECTOR, '#submit').click()
        wait.until(lambda d: 'total:' in d.find_element(
            By.CSS_SELECTOR, '#timings textarea').get_attribute('value'))
        answer = driver.find_element(By.CSS_SELECTOR, '#answer textarea').get_attribute('value')
        assert driver.find_elements(By.CSS_SELECTOR, '#mask img'), 'no mask image in the page'
        shot = os.environ.get('CRSEG_WEBUI_SCREENSHOT', str(tmp_path / 'webui.png'))
        driver.save_screenshot(shot)
    finally:
        driver.quit()
    assert answer == _demo_answer(server['cfg'], server['ckpt'], img, q, tmp_path / 'demo')
