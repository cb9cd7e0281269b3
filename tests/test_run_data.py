"""A run is tied to its data (the fingerprint in result.json, last.pt and model.pt), distill's teacher
checks, the order of the tricks' start hooks, and the last rough edges of bad input."""
import json
import os
import shutil
import subprocess
import sys
from itertools import permutations

import pytest
import torch
import torchvision

import baseline
import common
import distill
import ema
import ghmc
import lsuv
from conftest import REPO, interrupted_in_epoch_2, make_folder, run_argv
from support.flags import defines_a_trick


@pytest.fixture
def repainted(tmp_path, folder):
    """The synthetic folder's tree again, every file name and count kept, the pixels drawn anew."""
    other = tmp_path / 'repainted'
    shutil.copytree(folder, other)
    g = torch.Generator().manual_seed(1)
    for path in other.rglob('*.*'):
        image = torchvision.io.decode_image(str(path))
        noise = torch.randint(0, 256, image.shape, dtype=torch.uint8, generator=g)[:3]  # RGBA as RGB
        if path.suffix == '.png':
            torchvision.io.write_png(noise, str(path))
        else:
            torchvision.io.write_jpeg(noise, str(path), quality=95)
    return other


def on(data, run_args, *extra, out='run'):
    """run_args with --data replaced."""
    argv = run_args(*extra, out=out)
    argv[argv.index('--data') + 1] = str(data)
    return argv


def test_result_json_last_pt_and_model_pt_carry_the_fingerprint(run_args, tmp_path):
    result = common.main(baseline, run_args('--val-split', '0.25', '--test-subset', '10'))
    fingerprint = result['data']
    assert fingerprint == {'dataset': 'folder', 'classes': 3, 'train': 18, 'val': 6, 'test': 10, 'val_split': 0.25,
                           'image_size': 32, 'digest': fingerprint['digest']}
    assert json.loads((tmp_path / 'run' / 'result.json').read_text())['data'] == fingerprint
    for name in ('last.pt', 'model.pt'):
        assert torch.load(tmp_path / 'run' / name, weights_only=True)['data'] == fingerprint


def test_a_finished_run_on_other_data_is_refused_naming_what_differs(run_args, tmp_path, repainted):
    common.main(baseline, run_args())
    two_classes = make_folder(tmp_path / 'two', classes=2)
    with pytest.raises(SystemExit, match=r'run was trained on 3 classes, 24 train images, 12 test images; this command '
                                         r'gives 2 classes, 16 train images, 8 test images: use another --out, or --force'):
        common.main(baseline, on(two_classes, run_args, '--resume'))
    with pytest.raises(SystemExit, match=r'run was trained on other files \(3 classes, 24 train images here too, but '
                                         r'their names, labels or sizes differ\): use another --out, or --force'):
        common.main(baseline, on(repainted, run_args, '--resume'))


def test_an_unfinished_run_resumed_on_other_data_is_refused(run_args, repainted):
    interrupted_in_epoch_2(baseline, run_args('--epochs', '3'))
    with pytest.raises(SystemExit, match=r'run was trained on other files'):
        common.main(baseline, on(repainted, run_args, '--epochs', '3', '--resume'))


def test_the_same_files_in_another_folder_are_the_same_data(run_args, tmp_path, folder, capsys):
    interrupted_in_epoch_2(baseline, run_args('--epochs', '3'))
    moved = tmp_path / 'moved'
    shutil.copytree(folder, moved)
    resumed = common.main(baseline, on(moved, run_args, '--epochs', '3', '--resume'))
    assert resumed['epochs'] == 3
    again = common.main(baseline, on(moved, run_args, '--epochs', '3', '--resume'))
    assert 'finished already' in capsys.readouterr().out and again['data'] == resumed['data']


def test_a_run_saved_before_fingerprints_is_taken_with_a_note(run_args, tmp_path, capsys):
    interrupted_in_epoch_2(baseline, run_args('--epochs', '3'))
    last = torch.load(tmp_path / 'run' / 'last.pt', weights_only=True)
    del last['data']
    torch.save(last, tmp_path / 'run' / 'last.pt')
    common.main(baseline, run_args('--epochs', '3', '--resume'))
    result = json.loads((tmp_path / 'run' / 'result.json').read_text())
    del result['data']
    (tmp_path / 'run' / 'result.json').write_text(json.dumps(result))
    common.main(baseline, run_args('--epochs', '3', '--resume'))
    out = capsys.readouterr().out
    assert out.count('was saved before runs recorded their data: its data is not checked') == 2
    assert 'finished already' in out


def test_run_all_skips_only_runs_made_on_the_same_files(run_args, tmp_path, folder, repainted):
    def run_all(data):
        env = dict(os.environ, DATA=str(data), OUT=str(tmp_path / 'runs'), ROWS='baseline', JOBS='1',
                   PYTHON=sys.executable, EXTRA=f"--device cpu --cache-dir {tmp_path / 'cache'}")
        return subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
    first = run_all(folder)
    assert first.returncode == 0, first.stdout + first.stderr
    result = tmp_path / 'runs' / 'baseline' / 's0' / 'result.json'
    stamp = result.stat().st_mtime_ns
    moved = tmp_path / 'moved'  # the same files elsewhere: skipped without starting the run
    shutil.copytree(folder, moved)
    again = run_all(moved)
    assert again.returncode == 0 and '== baseline s0: done (' in again.stdout, again.stdout + again.stderr
    other = run_all(repainted)  # the same names elsewhere, other pixels: the table stops with the run's line
    assert other.returncode == 1 and 'run_all.sh smoke: baseline s0: error: ' in other.stderr, other.stdout + other.stderr
    assert 'was trained on other files' in other.stderr and '->' not in other.stdout  # nothing started
    assert result.stat().st_mtime_ns == stamp


# ---------------------------------------------------------------- distillation's teacher

@pytest.fixture
def teacher_run(run_args, tmp_path):
    common.main(baseline, run_args(out='teacher'))
    return tmp_path / 'teacher'


def test_distill_learns_from_a_teachers_last_pt_as_from_its_model_pt(teacher_run):
    from_last, saved = distill.load_teacher(str(teacher_run / 'last.pt'), None, 3, 'cpu')
    from_model, _ = distill.load_teacher(str(teacher_run / 'model.pt'), None, 3, 'cpu')
    assert saved['arch'] == 'resnet20' and saved['classes'] == ['class0', 'class1', 'class2']
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(from_last(x), from_model(x))


@pytest.mark.parametrize('teacher, arch, message', [
    ('teacher/model.pt', 'resnet20', r'teacher/model.pt holds a training checkpoint, not a state dict: drop --teacher-arch'),
    ('teacher/last.pt', 'resnet20', r'teacher/last.pt holds a training checkpoint, not a state dict: drop --teacher-arch'),
    ('nowhere.pt', None, r'distill: --teacher .*nowhere.pt does not exist'),
    ('five.pth', 'resnet20', r'does not fit resnet20 with 3 classes: fc.weight is 5 x 64 there, 3 x 64 here'),
    ('five.pth', 'resnet32', r'does not fit resnet32 with 3 classes: it has no layer1.3.conv1.weight, which the net '
                             r'needs'),
])
def test_a_teacher_that_does_not_fit_says_why_in_words(teacher, arch, message, teacher_run, run_args, tmp_path):
    import models
    torch.save(models.build('resnet20', 5).state_dict(), tmp_path / 'five.pth')
    flags = ('--teacher', tmp_path / teacher) + (('--teacher-arch', arch) if arch else ())
    distill.load_teacher.cache_clear()
    with pytest.raises(SystemExit, match=message):
        common.main(distill, run_args(*flags, out='student'))


def test_a_teacher_that_saw_the_students_val_images_is_refused(run_args, tmp_path, capsys):
    common.main(baseline, run_args(out='teacher'))  # trained on every training image
    with pytest.raises(SystemExit, match=r'the student selects on --val-split 0.25, but the teacher was trained with '
                                         r'--val-split 0.0 .* train the teacher with --val-split 0.25'):
        common.main(distill, run_args('--val-split', '0.25', '--teacher', tmp_path / 'teacher' / 'model.pt',
                                      out='student'))
    common.main(baseline, run_args('--val-split', '0.25', out='teacher25'))
    result = common.main(distill, run_args('--val-split', '0.25', '--teacher', tmp_path / 'teacher25' / 'model.pt',
                                           out='student25'))
    assert result['best_val_acc'] is not None
    # a state dict says nothing of its images: said, not refused
    torch.save(torch.load(tmp_path / 'teacher' / 'model.pt', weights_only=True)['state_dict'], tmp_path / 'sd.pth')
    common.main(distill, run_args('--val-split', '0.25', '--teacher', tmp_path / 'sd.pth', '--teacher-arch', 'resnet20',
                                  out='student-sd'))
    assert 'distill: cannot tell which images' in capsys.readouterr().out


# ---------------------------------------------------------------- tricks in either order

HOOKED = [t for t in (distill, ema, ghmc, lsuv) if hasattr(t, 'start') or hasattr(t, 'init')]


def at_step_0(script, other, argv, teacher):
    if distill in (script, other):
        argv = argv + ['--teacher', str(teacher)]
    try:
        run = common.prepare(script, argv + ['--with', other.__name__])
    except SystemExit as e:
        assert 'cannot be combined' in str(e)
        return None
    return {k: v.clone() for k, v in {**run.net.state_dict(), **run.extra.state_dict()}.items()}


def test_every_ordered_pair_of_tricks_with_start_hooks_starts_alike(run_args, tmp_path):
    assert {t.__name__ for t in HOOKED} == {'distill', 'ema', 'ghmc', 'lsuv'}  # every trick the contract calls first
    common.main(baseline, run_args(out='teacher'))
    argv, teacher = run_args(), tmp_path / 'teacher' / 'model.pt'
    compared = 0
    for a, b in permutations(HOOKED, 2):
        ab, ba = at_step_0(a, b, argv, teacher), at_step_0(b, a, argv, teacher)
        assert (ab is None) == (ba is None), (a.__name__, b.__name__)
        if ab is not None:
            assert ab.keys() == ba.keys() and all(torch.equal(ab[k], ba[k]) for k in ab), (a.__name__, b.__name__)
            if 'ema.updates' in ab:  # the average starts as the net it averages, re-initialised or not
                net = {k: v for k, v in ab.items() if not k.startswith(('ema.', 'ghm'))}
                assert all(torch.equal(v, ab[f'ema.module.{k}']) for k, v in net.items())
            compared += 1
    assert compared == 10  # 12 ordered pairs, but distill and ghmc both replace the loss


def test_tricks_define_start_only_through_the_contract():
    import importlib
    scripts = [p.stem for p in REPO.glob('*.py') if p.stem not in ('common', 'bench', 'tune', 'summarize', 'evaluate')]
    hooked = {s for s in scripts if defines_a_trick(m := importlib.import_module(s)) and
              (hasattr(m, 'start') or hasattr(m, 'init'))}
    assert hooked == {t.__name__ for t in HOOKED}


# ---------------------------------------------------------------- bad input, one line each

def test_out_naming_a_file_is_one_line(run_args, tmp_path):
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(SystemExit, match=r'--out .*afile is a file: give a folder for the run'):
        common.main(baseline, run_args(out='afile'))


@pytest.mark.parametrize('where', ['a file', 'under a file'])
def test_a_cache_dir_that_cannot_be_made_or_written_is_one_line(where, folder, tmp_path):
    (tmp_path / 'afile').write_text('x')
    cache = tmp_path / 'afile' if where == 'a file' else tmp_path / 'afile' / 'cache'
    argv = run_argv(folder, tmp_path, epochs=1, batch_size=8, device='cpu')()
    argv[argv.index('--cache-dir') + 1] = str(cache)
    with pytest.raises(SystemExit, match=r'--cache-dir .*afile.*: cannot write the decoded images there .*: give a '
                                         'folder you can write to'):
        common.main(baseline, argv)


def test_ctrl_c_in_epoch_1_says_nothing_is_saved_yet(run_args, tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(common, 'train_epoch', interrupted)
    with pytest.raises(SystemExit, match=r'interrupted in epoch 1: nothing saved yet; the same command starts .* again'):
        common.main(baseline, run_args())
    assert not (tmp_path / 'run' / 'last.pt').exists()
