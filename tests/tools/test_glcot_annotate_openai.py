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
from glcot_stub import StubServer, _write, box_shape, make_reasonseg, read_lines  # noqa: E402


@pytest.fixture(scope='module')
def server():
    with StubServer() as s:
        yield s


@pytest.fixture
def caplog_lines(monkeypatch):
    """The messages the annotation writer logs."""
    from crseg.annotation import writer
    lines = []
    monkeypatch.setattr(writer, 'print_log', lambda msg, **kw: lines.append(msg))
    return lines


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
    assert report['status'] == 'annotated'
    # a second run asks nothing: everything is done or deliberately left out; exit 0
    before = out.read_bytes()
    again = run(folder, out, server.url('ok'))
    assert again['this_run']['asked'] == 0 and out.read_bytes() == before
    assert again['status'] == 'nothing_to_do'
    assert again['message'].startswith('nothing to do: all 13 items are already annotated (9)')
    # --redo-rejected asks the rejected and bad items again, still without duplicates; none
    # is accepted this time, so the run exits non-zero saying why
    with pytest.raises(SystemExit, match=r'nothing annotated: 4 item\(s\) handled this run, '
                                         r'none accepted \(rejected by the quality gate: '
                                         r'inconsistent 1, unparsed 1; failed requests: 0; bad '
                                         r'input: 2\); every item left out and why: .*'
                                         r'glcot.rejects.jsonl'):
        run(folder, out, server.url('ok'), '--redo-rejected', '--retries', '0')
    redo = json.loads((tmp_path / 'glcot.report.json').read_text())
    assert redo['this_run']['asked'] == 2 and redo['this_run']['bad_input'] == 2
    assert redo['status'] == 'nothing_annotated'
    assert out.read_bytes() == before


def run_failing(folder, out, url, *extra):
    """A run that annotates nothing: it exits non-zero naming the rejects file; its report."""
    with pytest.raises(SystemExit, match=r'glcot_annotate: nothing annotated: .* every item '
                                         r'left out and why: .*\.rejects\.jsonl') as exc:
        run(folder, out, url, *extra)
    assert exc.value.code != 0
    report = json.loads(out.with_name(out.stem + '.report.json').read_text())
    assert report['status'] == 'nothing_annotated' and report['message'] in str(exc.value)
    return report


@pytest.mark.parametrize('mode', ['http500', 'garbage', 'badjson', 'badshape', 'hang'])
def test_failing_endpoint_is_retried_then_recorded(tmp_path, server, mode):
    folder = make_reasonseg(tmp_path, n_plain=2, with_bad=False)
    out = tmp_path / 'glcot.jsonl'
    server.app.state.counts.clear()
    report = run_failing(folder, out, server.url(mode), '--request-retries', '2', '--timeout',
                         '0.5', '--concurrency', '4')
    assert report['this_run']['failed_requests'] == 4 and report['annotated'] == 0
    assert 'failed requests: 4' in report['message']
    assert server.app.state.counts[mode] == 4 * 3  # first try + 2 retries, each item
    rejects = read_lines(tmp_path / 'glcot.rejects.jsonl')
    assert [r['kind'] for r in rejects] == ['failed'] * 4
    expect = {'http500': 'HTTP 500', 'garbage': 'malformed reply', 'badshape': 'malformed reply',
              'badjson': 'malformed reply: the body is not JSON (JSONDecodeError',
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
    report = run_failing(folder, tmp_path / 'o.jsonl', server.url('http404'),
                         '--request-retries', '3')
    assert report['this_run']['failed_requests'] == 2 and server.app.state.counts['http404'] == 2
    details = [r['detail'] for r in read_lines(tmp_path / 'o.rejects.jsonl')]
    assert all(d.startswith('HTTP 404') and '(after 1 tries)' in d for d in details), details


def test_flaky_endpoint_recovers_and_refused_connection(tmp_path, server):
    folder = make_reasonseg(tmp_path, n_plain=2, with_bad=False)
    report = run(folder, tmp_path / 'a.jsonl', server.url('flaky'), '--request-retries', '1')
    assert report['annotated'] == 4 and report['this_run']['failed_requests'] == 0
    from glcot_stub import free_port
    dead = f'http://127.0.0.1:{free_port()}/v1'  # nothing listens there
    report = run_failing(folder, tmp_path / 'b.jsonl', dead, '--request-retries', '1')
    assert report['this_run']['failed_requests'] == 4
    details = [r['detail'] for r in read_lines(tmp_path / 'b.rejects.jsonl')]
    assert all(d.startswith('connection failed') for d in details), details


def test_every_item_rejected_exits_nonzero_and_says_why(tmp_path, server):
    folder = tmp_path / 'train'
    _write(folder, 'u1', ['unparseable lamp'], [box_shape(5, 5, 15, 15)], seed=1)
    _write(folder, 'u2', ['mismatch spoon'], [box_shape(5, 5, 15, 15)], seed=2)
    out = tmp_path / 'o.jsonl'
    report = run_failing(folder, out, server.url('ok'))
    assert 'rejected by the quality gate: inconsistent 1, unparsed 1;' in report['message']
    assert report['this_run']['asked'] == 2 and out.read_text() == ''
    # the same command again: nothing left to ask, but nothing was ever annotated either
    with pytest.raises(SystemExit, match=r'nothing annotated: all 2 items were left out by an '
                                         r'earlier run .*--redo-rejected asks them again'):
        run(folder, out, server.url('ok'))


@pytest.mark.parametrize('limit', [None, '0'])
def test_no_items_exits_nonzero_before_asking(tmp_path, server, limit):
    folder = make_reasonseg(tmp_path, n_plain=1, with_bad=False) if limit else tmp_path / 'e'
    folder.mkdir(exist_ok=True)
    server.app.state.counts.clear()
    extra = ['--limit', limit] if limit else []
    why = r' with --limit 0' if limit else ''
    with pytest.raises(SystemExit, match=rf'no items to annotate in .*{why}: nothing asked'):
        run(folder, tmp_path / 'o.jsonl', server.url('ok'), *extra)
    assert sum(server.app.state.counts.values()) == 0
    assert not (tmp_path / 'o.jsonl').exists() and not (tmp_path / 'o.report.json').exists()


def test_resume_keeps_a_whole_last_record_without_newline(tmp_path, server, caplog_lines):
    folder = make_reasonseg(tmp_path, n_plain=2, with_bad=False)
    out = tmp_path / 'glcot.jsonl'
    run(folder, out, server.url('ok'))
    whole = out.read_bytes()
    out.write_bytes(whole[:-1])  # e.g. saved by an editor that drops the final newline
    server.app.state.counts.clear()
    again = run(folder, out, server.url('ok'))
    assert again['this_run']['asked'] == 0 and again['status'] == 'nothing_to_do'
    assert server.app.state.counts['ok'] == 0 and out.read_bytes() == whole
    assert any('whole record without its final newline; kept it' in m for m in caplog_lines)
    assert not (tmp_path / 'glcot.jsonl.cut').exists()
    # a truly half-written last record is cut, saved aside (logged), and asked again
    last = whole[:-1].rsplit(b'\n', 1)[1]
    out.write_bytes(whole[:-len(last) - 1] + last[:30])
    again = run(folder, out, server.url('ok'))
    assert again['this_run']['asked'] == 1 and out.read_bytes() == whole
    assert (tmp_path / 'glcot.jsonl.cut').read_bytes() == last[:30] + b'\n'
    assert any('cut an unterminated last line (30 bytes' in m and 'glcot.jsonl.cut' in m
               for m in caplog_lines)


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
