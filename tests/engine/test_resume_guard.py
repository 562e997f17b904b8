"""Which config a work dir belongs to: tools/train.py's check before the model is built."""
import pytest
import torch
from mmengine.config import Config

from crseg.engine import resume_guard
from crseg.engine.resume_guard import (WorkDirOwnerError, check_work_dir_owner,
                                       experiment_of_name, recorded_settings)

MODEL = dict(type='EncoderDecoder', decode_head=dict(type='FCNHead', channels=8))
DATA = dict(type='RandomShapesDataset', num_samples=8)


def _cfg(name, resume=False, load_from=None, model=MODEL, **extra):
    return Config(dict(model=model, train_dataloader=dict(dataset=DATA), resume=resume,
                       load_from=load_from, **extra),
                  cfg_text=f'# {name}', filename=f'/configs/{name}.py')


def _work_dir(tmp_path, experiment='a', model=MODEL, recorded=True):
    """A work dir whose last checkpoint iter_8.pth was written by ``experiment``."""
    ckpt = tmp_path / 'iter_8.pth'
    meta = {'experiment_name': f'{experiment}_20260101_120000', 'iter': 8}
    if recorded:
        meta.update(recorded_settings(_cfg(experiment, model=model)))
    torch.save({'meta': meta, 'state_dict': {}}, ckpt)
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    return tmp_path, ckpt


@pytest.fixture
def log(monkeypatch):
    """The lines the guard logs (whatever logger instance is current)."""
    lines = []
    monkeypatch.setattr(resume_guard, 'print_log', lambda msg, *a, **k: lines.append(msg))

    class _Log:
        @property
        def text(self):
            text = '\n'.join(lines)
            lines.clear()
            return text
    return _Log()


def test_experiment_names():
    assert experiment_of_name('crseg_tiny_20261208_030156') == 'crseg_tiny'
    assert experiment_of_name('crseg_tiny_20261208_030156_2') == 'crseg_tiny'
    assert experiment_of_name('20261208_030156') is None
    assert experiment_of_name(None) is None


@pytest.mark.parametrize('resume, doing', [
    (True, "--resume would train this config on the weights of 'a'"),
    (False, "this run would write its checkpoints over those of 'a'")])
def test_work_dir_of_another_config_is_refused(tmp_path, resume, doing):
    work, ckpt = _work_dir(tmp_path)
    other_model = dict(MODEL, decode_head=dict(type='FCNHead', channels=16))
    with pytest.raises(WorkDirOwnerError) as e:
        check_work_dir_owner(_cfg('b', resume=resume, model=other_model), str(work))
    msg = str(e.value)
    for part in (f'work dir {work} belongs to another config', f'last checkpoint {ckpt}',
                 "experiment 'a'", "this config (/configs/b.py) is experiment 'b'",
                 'model.decode_head.channels: 8 -> 16', doing, '--work-dir work_dirs/b',
                 f'--resume {ckpt}'):
        assert part in msg, (part, msg)
    assert ckpt.is_file()


def test_checkpoint_without_recorded_settings_of_another_name_is_refused(tmp_path):
    work, _ = _work_dir(tmp_path, recorded=False)
    with pytest.raises(WorkDirOwnerError, match='model: not recorded in the checkpoint'):
        check_work_dir_owner(_cfg('b', resume=True), str(work))


def test_same_training_under_another_config_file_continues(tmp_path, log):
    """A copy that trains longer, or a wrapper that adds a hook: same model and data."""
    work, _ = _work_dir(tmp_path)
    check_work_dir_owner(_cfg('a_longer', resume=True, train_cfg=dict(max_iters=16)),
                         str(work))
    assert "the checkpoints of experiment 'a' have the model and training-data settings of " \
           "this config (experiment 'a_longer')" in log.text
    # other training data: another config
    with pytest.raises(WorkDirOwnerError, match=r"train_dataloader\.dataset\.num_samples: 8 "
                       "-> 16"):
        check_work_dir_owner(Config(dict(_cfg('a_longer', resume=True).to_dict(),
                                         train_dataloader=dict(dataset=dict(
                                             DATA, num_samples=16))),
                                    cfg_text='#', filename='/configs/a_longer.py'), str(work))


def test_same_experiment_resumes_and_names_changes(tmp_path, log):
    work, ckpt = _work_dir(tmp_path)
    # a longer schedule, another optimizer: the same experiment, silently
    check_work_dir_owner(_cfg('a', resume=True, train_cfg=dict(max_iters=16)), str(work))
    assert 'changed' not in log.text
    changed = _cfg('a', resume=True)
    changed.model.decode_head.channels = 16
    check_work_dir_owner(changed, str(work))
    assert f'--resume {ckpt}: settings changed since that checkpoint (checkpoint -> this ' \
           'config): model.decode_head.channels: 8 -> 16' in log.text
    # experiment_name in the config names the experiment
    check_work_dir_owner(_cfg('renamed', resume=True, experiment_name='a', model=dict(
        MODEL, type='Other')), str(work))


def test_naming_the_checkpoint_continues_it_on_purpose(tmp_path, log):
    work, ckpt = _work_dir(tmp_path)
    other_model = dict(MODEL, type='Other')
    check_work_dir_owner(_cfg('b', resume=True, load_from=str(ckpt), model=other_model),
                         str(work))
    assert f"--resume {ckpt}: continuing a checkpoint of experiment 'a' under this config " \
           "(experiment 'b')" in log.text
    # another file than the work dir's last checkpoint does not make the work dir b's
    other = tmp_path / 'elsewhere.pth'
    other.write_bytes(ckpt.read_bytes())
    with pytest.raises(WorkDirOwnerError, match='belongs to another config'):
        check_work_dir_owner(_cfg('b', resume=True, load_from=str(other), model=other_model),
                             str(work))


def test_empty_or_own_work_dir_is_not_checked(tmp_path):
    check_work_dir_owner(_cfg('b', resume=True), str(tmp_path / 'new'))
    work, _ = _work_dir(tmp_path, experiment='b', model=dict(MODEL, type='Other'))
    check_work_dir_owner(_cfg('b'), str(work))
