"""tools/analysis_tools/synthreason_table.sh with python stubbed: which runs it trains, reuses
and resumes (finished runs carry a .done mark; an interrupted run resumes from its checkpoint)."""
import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUB = """#!/usr/bin/env bash
# stands in for python: records each tools/*.py call, fakes its outputs
echo "$*" >> "$CALLS"
case "$1" in
  tools/train.py)
    while [ "$1" != --work-dir ]; do shift; done
    mkdir -p "$2"; printf '%s' "$2/iter_9.pth" > "$2/last_checkpoint" ;;
  tools/benchmark.py)
    while [ "$1" != --out ]; do shift; done
    echo '| method | gIoU |' > "$2/benchmark.md" ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""


def _stub(tmp_path):
    stub = tmp_path / 'py'
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return stub


def test_table_reuses_finished_runs_and_resumes_interrupted_ones(tmp_path):
    stub = _stub(tmp_path)
    work, demo = tmp_path / 'table', tmp_path / 'demo'
    (demo / 'crseg').mkdir(parents=True)
    (demo / 'crseg' / 'last_checkpoint').write_text(str(demo / 'crseg' / 'iter_650.pth'))
    (work / 'boxpoint').mkdir(parents=True)  # finished earlier
    (work / 'boxpoint' / 'last_checkpoint').write_text(str(work / 'boxpoint' / 'iter_780.pth'))
    (work / 'boxpoint' / '.done').write_text('')
    (work / 'attnonly').mkdir()  # killed mid-way: a checkpoint, no .done
    (work / 'attnonly' / 'last_checkpoint').write_text(str(work / 'attnonly' / 'iter_500.pth'))
    calls = tmp_path / 'calls.txt'
    env = dict(os.environ, PY=str(stub), CALLS=str(calls), TABLE_WORK=str(work),
               DEMO_WORK=str(demo))
    r = subprocess.run(['bash', str(ROOT / 'tools/analysis_tools/synthreason_table.sh')],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    trains = [c for c in calls.read_text().splitlines() if c.startswith('tools/train.py')]
    by_dir = {c.split('--work-dir ')[1].split()[0]: c for c in trains}
    assert str(work / 'boxpoint') not in by_dir  # reused
    assert '--resume auto' in by_dir[str(work / 'attnonly')]
    for name in ('segtoken_lisa', 'segtoken_generate', 'plain_align', 'plain'):
        assert '--resume' not in by_dir[str(work / name)], name
        assert (work / name / '.done').is_file()
    assert (work / 'attnonly' / '.done').is_file()
    assert f"load_from={work / 'plain_align'}/iter_9.pth" in by_dir[str(work / 'plain')]
    assert '[table] reusing' in r.stdout and '| method | gIoU |' in r.stdout


def test_table_refuses_a_thread_count_openmp_cannot_read(tmp_path):
    calls = tmp_path / 'calls.txt'
    for bad in ('all', '0', '2.5'):
        env = dict(os.environ, PY=str(_stub(tmp_path)), CALLS=str(calls), TABLE_THREADS=bad,
                   TABLE_WORK=str(tmp_path / 'table'), DEMO_WORK=str(tmp_path / 'demo'))
        r = subprocess.run(['bash', str(ROOT / 'tools/analysis_tools/synthreason_table.sh')],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert f"TABLE_THREADS='{bad}': expected a whole number >= 1" in r.stderr
        assert not calls.exists()  # refused before any training
