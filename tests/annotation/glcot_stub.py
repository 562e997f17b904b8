"""Test helpers for the GLCoT annotator: a tiny ReasonSeg folder and a scripted teacher served
over real HTTP (FastAPI + uvicorn on 127.0.0.1, in a thread).

The scripted teacher reads the prompt the production code sends (query, hint, retry note),
checks the image is a decodable base64 JPEG data URL, and answers deterministically:

* query with "unparseable" -> prose without markers (rejected: unparsed, also on retry);
* query with "verbose" -> a long answer, then a short one when the prompt says a previous reply
  was rejected (accepted on retry);
* query with "mismatch" -> a region text that never names the answer (rejected: inconsistent);
* a prompt saying nothing matches -> ``answer: none``;
* otherwise answer = the query's last word, region and scene mention it.

Behaviour by URL prefix (``http://127.0.0.1:PORT/<mode>/v1``): ``ok``, ``slow`` (0.15 s per
reply), ``http404``, ``http500``, ``garbage`` (200 with non-JSON text), ``badjson`` (200
labelled ``application/json`` whose body is not JSON), ``badshape`` (200 JSON without choices),
``hang`` (sleeps ``HANG_S``), ``flaky`` (503 on each item's first request, then ok).
``app.state.counts[mode]`` counts requests.
"""
import asyncio
import base64
import json
import re
import socket
import threading
import time
from collections import Counter

import cv2
import numpy as np

HANG_S = 3.0
QUERY_RE = re.compile(r'Request about this image: "(.*)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scripted_reply(prompt: str) -> str:
    query = QUERY_RE.search(prompt).group(1)
    retry = 'previous reply was rejected' in prompt
    if 'nothing in this image matches' in prompt:
        return f'scene: a picture of shapes.\nregion: no part shows {query}.\nanswer: none'
    if 'unparseable' in query:
        return 'I believe the object in question is probably the thing over there.'
    head = query.split()[-1].strip('?.')
    if 'verbose' in query and not retry:
        return (f'scene: a picture of shapes.\nregion: the {head} near the middle.\n'
                f'answer: the very large {head} that is standing over there by the wall')
    if 'mismatch' in query:
        return 'scene: a picture of shapes.\nregion: a bright patch near the middle.\nanswer: ' \
            + head
    return f'scene: a picture of shapes.\nregion: the {head} near the middle, plain.\n' \
        f'answer: {head}'


def _check_image(body: dict) -> str:
    content = body['messages'][0]['content']
    url = next(c['image_url']['url'] for c in content if c['type'] == 'image_url')
    prefix = 'data:image/jpeg;base64,'
    assert url.startswith(prefix), url[:40]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(url[len(prefix):]), np.uint8),
                       cv2.IMREAD_COLOR)
    assert img is not None and img.ndim == 3
    return next(c['text'] for c in content if c['type'] == 'text')


def make_app():
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    app = FastAPI()
    app.state.counts = Counter()
    app.state.seen = Counter()

    @app.post('/{mode}/v1/chat/completions')
    async def chat(mode: str, request: Request):
        body = await request.json()
        app.state.counts[mode] += 1
        try:
            text = _check_image(body)
        except Exception as e:  # the client sent something wrong: a 400 the test will see
            return JSONResponse({'error': {'message': f'bad request: {e}'}}, status_code=400)
        if mode == 'http404':
            return JSONResponse({'error': {'message': 'model not found'}}, status_code=404)
        if mode == 'http500':
            return JSONResponse({'error': {'message': 'internal error'}}, status_code=500)
        if mode == 'garbage':
            return PlainTextResponse('<html>definitely not a chat completion</html>')
        if mode == 'badjson':
            return Response('<html>502 Bad Gateway</html>', media_type='application/json')
        if mode == 'badshape':
            return JSONResponse({'object': 'chat.completion', 'unexpected': True})
        if mode == 'hang':
            await asyncio.sleep(HANG_S)
        if mode == 'flaky':
            app.state.seen[text] += 1
            if app.state.seen[text] == 1:
                return JSONResponse({'error': {'message': 'try again'}}, status_code=503)
        if mode == 'slow':
            await asyncio.sleep(0.15)
        reply = scripted_reply(text)
        return JSONResponse({
            'id': 'chatcmpl-test', 'object': 'chat.completion', 'created': 0,
            'model': body.get('model', 'stub'),
            'choices': [{'index': 0, 'finish_reason': 'stop',
                         'message': {'role': 'assistant', 'content': reply}}],
            'usage': {'prompt_tokens': 1, 'completion_tokens': 1, 'total_tokens': 2}})

    return app


class StubServer:
    """uvicorn serving :func:`make_app` on a free loopback port, in a daemon thread."""

    def __init__(self):
        import uvicorn
        self.app = make_app()
        self.port = free_port()
        config = uvicorn.Config(self.app, host='127.0.0.1', port=self.port, log_level='error',
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, mode: str = 'ok') -> str:
        return f'http://127.0.0.1:{self.port}/{mode}/v1'

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError('stub server did not start')
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def _write(folder, name, texts, shapes, size=(32, 40), seed=0, is_sentence=False, image=True):
    folder.mkdir(parents=True, exist_ok=True)
    if image is True:
        img = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f'{name}.jpg'), img)
    elif isinstance(image, bytes):
        (folder / f'{name}.jpg').write_bytes(image)
    (folder / f'{name}.json').write_text(json.dumps(
        dict(text=texts, is_sentence=is_sentence, shapes=shapes)), encoding='utf-8')


def box_shape(x0, y0, x1, y1, label='target'):
    return dict(label=label, points=[[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def make_reasonseg(root, n_plain: int = 6, with_bad: bool = True):
    """``root/train``: n_plain good images (2 queries each) + special cases; returns the folder.

    Special cases (with_bad): an empty-target image, an image with an empty query next to a good
    one, an undecodable image, and the scripted teacher's unparseable / verbose / mismatch
    queries.
    """
    folder = root / 'train'
    words = ['cup', 'ball', 'chair', 'lamp', 'book', 'plant', 'clock', 'shoe', 'vase', 'kite']
    for k in range(n_plain):
        w = words[k % len(words)]
        _write(folder, f'img_{k:02d}', [f'the red {w}', f'what holds the {w}? the {w}'],
               [box_shape(3 + k, 4, 20 + k, 25)], seed=k, is_sentence=bool(k % 2))
    if with_bad:
        _write(folder, 'x_empty', ['the purple giraffe'], [], seed=50)
        _write(folder, 'x_emptyquery', ['  ', 'the blue cube'], [box_shape(2, 2, 12, 12)],
               seed=51)
        _write(folder, 'x_undecodable', ['the broken one'], [box_shape(2, 2, 12, 12)],
               image=b'this is not a jpeg')
        _write(folder, 'y_unparseable', ['unparseable lamp'], [box_shape(5, 5, 15, 15)],
               seed=52)
        _write(folder, 'y_verbose', ['verbose kettle'], [box_shape(5, 5, 15, 15)], seed=53)
        _write(folder, 'y_mismatch', ['mismatch spoon'], [box_shape(5, 5, 15, 15)], seed=54)
    return folder


def read_lines(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
