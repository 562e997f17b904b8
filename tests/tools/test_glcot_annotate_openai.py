"""The annotator's OpenAI-compatible teacher against a real HTTP server on 127.0.0.1.

The server (tests/annotation/glcot_stub.py) is FastAPI + uvicorn answering chat completions
with a *scripted* teacher (deterministic replies derived from the prompt the production client
sends); the client is the production ``OpenAITeacher`` (the ``openai`` library). The tiny
random-weight MLLMs never write parseable GLCoT text, so they cannot stand behind this server.
"""
import json
import sys
from pathlib import Path

import pytest

from crseg.datasets.glcot_sidecar import read_sidecar, sidecar_id

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'annotation'))
sys.path.insert(0, str(ROOT / 'tools' / 'dataset_converters'))
import glcot_annotate  # noqa: E402
from glcot_stub import StubServer, make_reasonseg, read_lines  # noqa: E402


@pytest.fixture(scope='module')
def server():
    with StubServer() as s:
        yield s


def run(folder, out, url, *extra):
    return glcot_annotate.main([str(folder), '--out', str(out), '--api-base', url, '--model',
                                'stub', '--no-progress', '--backoff', '0.01', *extra])


def test_scripted_teacher_end_to_end(tmp_path, server):
    folder = make_reasonseg(tmp_path, n_plain=3)
    out = tmp_path / 'glcot.jsonl'
    report = run(folder, out, server.url('ok'), '--concurrency', '4')
    sidecar = read_sidecar(str(out))
    ids = [r['id'] for r in read_lines(out)]
    # 3 images x 2 queries + empty target + blue cube + verbose (accepted on retry)
    assert len(ids) == 9 and len(set(ids)) == 9
    cup = sidecar[sidecar_id('img_00.jpg', 'the red cup')]
    assert cup['glcot'] == {'global': 'a picture of shapes.',
                            'local': 'the cup near the middle, plain.', 'answer': 'cup'}
    assert cup['image'] == 'img_00.jpg' and cup['attempt'] == 0
    assert sidecar[sidecar_id('x_empty.jpg', 'the purple giraffe')]['glcot']['answer'] == 'none'
    verbose = sidecar[sidecar_id('y_verbose.jpg', 'verbose kettle')]
    assert verbose['attempt'] == 1 and verbose['glcot']['answer'] == 'kettle'
    # left out, each with its reason, listed in the rejects file and the report
    rejects = {r['query']: r for r in read_lines(tmp_path / 'glcot.rejects.jsonl')}
    assert {q: (r['kind'], r['reason']) for q, r in rejects.items()} == {
        '  ': ('bad_input', 'empty_query'), 'the broken one': ('bad_input', 'image_unreadable'),
        'unparseable lamp': ('rejected', 'unparsed'),
        'mismatch spoon': ('rejected', 'inconsistent')}
    assert 'image failed' in rejects['the broken one']['detail']
    assert rejects['mismatch spoon']['attempt'] == 1  # retried once, then left out
    on_disk = json.loads((tmp_path / 'glcot.report.json').read_text())
    assert on_disk == report
    run_ = report['this_run']
    assert report['annotated'] == 9 and report['items'] == 13
    assert run_['asked'] == 11 and run_['accepted'] == 9 and run_['accepted_on_retry'] == 1
    assert run_['rejected_by_reason'] == {'unparsed': 1, 'inconsistent': 1}
    assert run_['bad_input'] == 2 and run_['failed_requests'] == 0
    assert run_['requests'] == 11 + 3  # verbose, unparseable and mismatch asked twice
    # consistency measured on every reply that reached the check (8 + verbose retry + 2 x mismatch)
    assert report['consistency'] == dict(rule='head', checked=10, consistent=8, rate=0.8)
    assert {r['query'] for r in report['left_out_items']} == set(rejects)
    # a second run asks nothing: everything is done or deliberately left out
    before = out.read_bytes()
    again = run(folder, out, server.url('ok'))
    assert again['this_run']['asked'] == 0 and out.read_bytes() == before
    # --redo-rejected asks the rejected and bad items again, still without duplicates
    redo = run(folder, out, server.url('ok'), '--redo-rejected', '--retries', '0')
    assert redo['this_run']['asked'] == 2 and redo['this_run']['bad_input'] == 2
    assert out.read_bytes() == before


@pytest.mark.parametrize('mode', ['http500', 'garbage', 'badshape', 'hang'])
def test_failing_endpoint_is_retried_then_recorded(tmp_path, server, mode):
    folder = make_reasonseg(tmp_path, n_plain=2, with_bad=False)
    out = tmp_path / 'glcot.jsonl'
    server.app.state.counts.clear()
    report = run(folder, out, server.url(mode), '--request-retries', '2', '--timeout', '0.5',
                 '--concurrency', '4')
    assert report['this_run']['failed_requests'] == 4 and report['annotated'] == 0
    assert server.app.state.counts[mode] == 4 * 3  # first try + 2 retries, each item
    rejects = read_lines(tmp_path / 'glcot.rejects.jsonl')
    assert [r['kind'] for r in rejects] == ['failed'] * 4
    expect = {'http500': 'HTTP 500', 'garbage': 'malformed reply', 'badshape': 'malformed reply',
              'hang': 'no reply within 0.5 s'}[mode]
    assert all(expect in r['detail'] and '(after 3 tries)' in r['detail'] for r in rejects)
    assert out.read_text() == ''
    # failed requests are asked again by the next run, which now succeeds
    report = run(folder, out, server.url('ok'))
    assert report['this_run']['asked'] == 4 and report['annotated'] == 4
    assert read_lines(tmp_path / 'glcot.rejects.jsonl') == []


def test_client_error_is_not_retried(tmp_path, server):
    folder = make_reasonseg(tmp_path, n_plain=1, with_bad=False)
    server.app.state.counts.clear()
    report = run(folder, tmp_path / 'o.jsonl', server.url('http404'), '--request-retries', '3')
    assert report['this_run']['failed_requests'] == 2 and server.app.state.counts['http404'] == 2
    details = [r['detail'] for r in read_lines(tmp_path / 'o.rejects.jsonl')]
    assert all(d.startswith('HTTP 404') and '(after 1 tries)' in d for d in details), details


def test_flaky_endpoint_recovers_and_refused_connection(tmp_path, server):
    folder = make_reasonseg(tmp_path, n_plain=2, with_bad=False)
    report = run(folder, tmp_path / 'a.jsonl', server.url('flaky'), '--request-retries', '1')
    assert report['annotated'] == 4 and report['this_run']['failed_requests'] == 0
    from glcot_stub import free_port
    dead = f'http://127.0.0.1:{free_port()}/v1'  # nothing listens there
    report = run(folder, tmp_path / 'b.jsonl', dead, '--request-retries', '1')
    assert report['this_run']['failed_requests'] == 4
    details = [r['detail'] for r in read_lines(tmp_path / 'b.rejects.jsonl')]
    assert all(d.startswith('connection failed') for d in details), details


def test_nonexistent_dataset_folder_is_a_clear_error(tmp_path, server):
    with pytest.raises(FileNotFoundError, match="dataset folder '.*nope' does not exist"):
        run(tmp_path / 'nope', tmp_path / 'o.jsonl', server.url('ok'))


def test_api_key_from_env(monkeypatch):
    from crseg.annotation import OpenAITeacher
    monkeypatch.setenv('MY_KEY', 'sk-test')
    t = OpenAITeacher('http://127.0.0.1:1/v1', 'm', api_key_env='MY_KEY')
    assert t.client.api_key == 'sk-test'
    monkeypatch.delenv('MY_KEY')
    t2 = OpenAITeacher('http://127.0.0.1:1/v1', 'm', api_key_env='MY_KEY')
    assert t2.client.api_key == 'EMPTY'
    t.close(), t2.close()
