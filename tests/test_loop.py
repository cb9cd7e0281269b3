"""The loop end to end: a run's outputs, resume, Ctrl-C, the trick contract and how tricks compose,
bad input, devices, evaluate.py, DDP on the CPU."""
import json
import os
import signal
import subprocess
import sys
import time
import types
from itertools import permutations
from pathlib import Path

import pytest
import torch

import baseline
import common
import cosine
import distill
import ema
import evaluate
import ghmc
import lsuv
from conftest import REPO, interrupted_in_epoch_2, make_folder
from support import flags, runfolder, tricks
from support.tricks import defines_a_trick


# ---------------------------------------------------------------- a run's outputs

def test_one_epoch_on_synthetic_folder_writes_every_output(run_args, tmp_path, capsys):
    result = common.main(baseline, run_args('--val-split', '0.25'))
    out = tmp_path / 'run'
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"final test accuracy: {result['final_test_acc']:.2f}%"
    (row,) = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    assert {'epoch', 'lr', 'train_loss', 'val_acc', 'test_loss', 'test_acc', 'images_per_sec',
            'epoch_seconds'} <= set(row)
    assert 'test_top5' not in row  # 3 classes: top-5 means nothing
    saved = json.loads((out / 'result.json').read_text())
    assert saved['script'] == 'baseline' and saved['tricks'] == {} and saved['args']['arch'] == 'resnet20'
    assert saved['best_val_acc'] == row['val_acc'] and saved['final_test_acc'] == row['test_acc']
    assert {'wall_seconds', 'device', 'torch'} <= set(saved)
    # model.pt rebuilds the net with no flag, and gives the logged accuracy again
    model, _ = evaluate.load_model(out / 'model.pt', 'cpu')
    assert model.arch == 'resnet20' and model.fc.out_features == 3
    metrics = evaluate.main([str(out / 'model.pt'), '--data', run_args()[1], '--device', 'cpu',
                             '--cache-dir', str(tmp_path / 'cache')])
    assert metrics['test_acc'] == pytest.approx(row['test_acc'])
    last = torch.load(out / 'last.pt', weights_only=True)
    assert {'model', 'optimizer', 'scheduler', 'scaler', 'rng', 'epoch'} <= set(last)


def test_evaluate_predicts_unlabelled_images_to_csv(run_args, folder, tmp_path):
    common.main(baseline, run_args())
    rows = evaluate.main([str(tmp_path / 'run' / 'model.pt'), '--predict', str(folder / 'test'),
                          '--csv', str(tmp_path / 'p.csv'), '--device', 'cpu'])
    lines = (tmp_path / 'p.csv').read_text().splitlines()
    assert lines[0] == 'file,class,probability' and len(lines) == 1 + 12 == 1 + len(rows)
    assert all(r[1] in ('class0', 'class1', 'class2') and 0 < r[2] <= 1 for r in rows)


def test_tensorboard_writes_event_files(run_args, tmp_path):
    pytest.importorskip('tensorboard')
    common.main(baseline, run_args('--tensorboard'))
    assert list((tmp_path / 'run' / 'tensorboard').glob('events.out.tfevents.*'))


def test_without_tensorboard_the_run_goes_on_with_one_line(run_args, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)  # as if not installed
    result = common.main(baseline, run_args('--tensorboard'))
    out = capsys.readouterr().out
    assert 'tensorboard is not installed (pip install tensorboard); going on without it' in out
    assert result['final_test_acc'] >= 0 and not (tmp_path / 'run' / 'tensorboard').exists()


def test_summary_prints_every_layer_with_shapes_and_parameters(run_args, capsys):
    common.main(baseline, run_args('--summary'))
    out = capsys.readouterr().out
    assert 'layer3.2.conv2' in out and '(2, 64, 8, 8)' in out and 'fc ' in out
    total = next(line for line in out.splitlines() if line.startswith('total'))
    assert total.endswith('272,019')  # ResNet-20 with a 3-class head: 272,474 - 7 x 65


def test_a_batch_that_leaves_many_images_out_of_every_epoch_is_said_at_start(run_args, tmp_path, capsys):
    common.main(baseline, run_args('--batch-size', '16'))  # 24 images: one batch of 16, 8 left out
    assert ('note: 24 training images in batches of 16 leave 8 out of every epoch; --batch-size 12 uses nearly all '
            'of them') in capsys.readouterr().out
    common.main(baseline, run_args('--batch-size', '128', out='small'))  # fewer than a batch: one batch of all 24
    assert 'note:' not in capsys.readouterr().out


# ---------------------------------------------------------------- resume, Ctrl-C, finished runs

def test_resume_ends_where_the_uninterrupted_run_does(run_args, tmp_path):
    flags = ('--epochs', '3', '--subset', '16')
    straight = common.main(baseline, run_args(*flags, out='straight'))

    interrupted_in_epoch_2(baseline, run_args(*flags, out='killed'))  # dies before epoch 2 is checkpointed
    assert torch.load(tmp_path / 'killed' / 'last.pt', weights_only=True)['epoch'] == 1
    with pytest.raises(SystemExit, match='unfinished run'):
        common.main(baseline, run_args(*flags, out='killed'))
    with pytest.raises(SystemExit, match=r'made by another command \(lr: 0\.1 there, 0\.05 here\)'):
        common.main(baseline, run_args(*flags, '--resume', '--lr', '0.05', out='killed'))
    resumed = common.main(baseline, run_args(*flags, '--resume', out='killed'))

    assert resumed['final_test_acc'] == straight['final_test_acc']
    a = torch.load(tmp_path / 'straight' / 'model.pt', weights_only=True)['state_dict']
    b = torch.load(tmp_path / 'killed' / 'model.pt', weights_only=True)['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / 'killed' / 'log.jsonl').read_text().splitlines()
    assert [json.loads(r)['epoch'] for r in rows] == [1, 2, 3]


def test_ctrl_c_while_saving_is_held_until_log_and_last_pt_are_both_written():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with runfolder.ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)  # delivered here: held, not raised
            done.append('log')
            done.append('last.pt')
    assert done == ['log', 'last.pt'] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_inside_two_holds_is_raised_once_when_the_outer_one_ends():
    # common.main holds around save_epoch, which holds too: raising at the inner end skipped the
    # outer block's `saved = epoch + 1`, and the message said one epoch fewer than last.pt held
    done = []
    with pytest.raises(KeyboardInterrupt):
        with runfolder.ctrl_c_held():
            with runfolder.ctrl_c_held():
                os.kill(os.getpid(), signal.SIGINT)
                done.append('inner')
            done.append('outer')
    assert done == ['inner', 'outer'] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGTERM], ids=['ctrl-c', 'sigterm'])
def test_ctrl_c_or_sigterm_ends_with_one_line_saying_what_last_pt_holds(stop, run_args, tmp_path):
    proc = subprocess.Popen([sys.executable, 'baseline.py', *run_args('--epochs', '1000')], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / 'run' / 'log.jsonl'
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count('\n') >= 2):
        time.sleep(0.05)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and 'Traceback' not in err
    saved = torch.load(tmp_path / 'run' / 'last.pt', weights_only=False)['epoch']
    assert err.strip().splitlines()[-1] == (f"error: interrupted: {tmp_path / 'run'}/last.pt holds {saved} of 1000 "
                                            "epochs; the same command with --resume carries on from there")
    assert saved == len(log.read_text().splitlines()) >= 2
    assert not list((tmp_path / 'run').glob('.*.partial-*'))


def test_ctrl_c_in_epoch_1_says_nothing_is_saved_yet(run_args, tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(common, 'train_epoch', interrupted)
    with pytest.raises(SystemExit, match=r'interrupted in epoch 1: nothing saved yet; the same command starts .* again'):
        common.main(baseline, run_args())
    assert not (tmp_path / 'run' / 'last.pt').exists()


def test_a_finished_run_is_neither_overwritten_nor_redone(run_args, tmp_path, capsys):
    common.main(baseline, run_args())
    with pytest.raises(SystemExit, match="already holds this command's run, finished: --resume skips it"):
        common.main(baseline, run_args())
    # without --resume, another command's finished run is named as that, not offered to --resume
    with pytest.raises(SystemExit, match=r'finished run of another command \(lr: 0\.1 there, 0\.05 here\): --force'):
        common.main(baseline, run_args('--lr', '0.05'))
    capsys.readouterr()
    again = common.main(baseline, run_args('--resume'))
    assert 'finished already' in capsys.readouterr().out
    assert again['final_test_acc'] == json.loads((tmp_path / 'run' / 'result.json').read_text())['final_test_acc']
    # --resume takes a finished run only where it was made by the same command
    with pytest.raises(SystemExit, match=r'finished run of another command \(lr: 0\.1 there, 0\.05 here\): --force'):
        common.main(baseline, run_args('--resume', '--lr', '0.05'))
    with pytest.raises(SystemExit, match=r'another command \(.*script: baseline there, cosine here'):
        common.main(cosine, run_args('--resume'))
    common.main(baseline, run_args('--force'))


def test_resuming_another_runs_checkpoint_is_a_clear_error(run_args, tmp_path):
    common.main(baseline, run_args('--epochs', '2'))
    (tmp_path / 'run' / 'result.json').unlink()
    with pytest.raises(SystemExit, match=r'was made by another command \(arch: resnet20 there, resnet32 here\)'):
        common.main(baseline, run_args('--epochs', '2', '--arch', 'resnet32', '--resume'))
    assert common.main(baseline, run_args('--epochs', '2', '--resume'))['epochs'] == 2
    # a checkpoint that does not say which command made it is not this run's
    state = torch.load(tmp_path / 'run' / 'last.pt', weights_only=True)
    del state['args']
    (tmp_path / 'run' / 'result.json').unlink()
    torch.save(state, tmp_path / 'run' / 'last.pt')
    with pytest.raises(SystemExit, match=r"last.pt is not a checkpoint of this project: --force starts the run over"):
        common.main(baseline, run_args('--epochs', '2', '--resume'))
    (tmp_path / 'run' / 'last.pt').write_bytes(b'garbage')
    with pytest.raises(SystemExit, match='cannot read'):
        common.main(baseline, run_args('--epochs', '2', '--resume'))


# ---------------------------------------------------------------- one run, one folder

def test_a_second_run_on_a_folder_in_use_stops_at_once_naming_the_holder(run_args, tmp_path):
    out = tmp_path / 'run'
    with runfolder.claimed(out, 0, print):  # as a run in this very process holds it: a flock is per open file
        assert (out / runfolder.LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(SystemExit, match=rf"{out} is in use by another run \(pid {os.getpid()}\): wait for it"):
            common.main(baseline, run_args('--seed', '1'))
        assert sorted(p.name for p in out.iterdir()) == [runfolder.LOCK]  # it wrote nothing
    assert common.main(baseline, run_args())['epochs'] == 1  # held no more: the next run takes it


def test_two_processes_on_one_folder_leave_one_coherent_run(run_args, tmp_path):
    out = tmp_path / 'run'
    first = subprocess.Popen([sys.executable, 'baseline.py', *run_args('--epochs', '3', '--seed', '0')], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock, deadline = out / runfolder.LOCK, time.time() + 120
    while time.time() < deadline and not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        time.sleep(0.05)
    second = subprocess.run([sys.executable, 'baseline.py', *run_args('--epochs', '3', '--seed', '1')], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1 and second.stderr.strip().splitlines() == [
        f"error: {out} is in use by another run (pid {first.pid}): wait for it to end, or give another --out"]
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    result = json.loads((out / 'result.json').read_text())
    last = torch.load(out / 'last.pt', weights_only=True)
    model = torch.load(out / 'model.pt', weights_only=True)
    assert result['args']['seed'] == last['args']['seed'] == 0 and last['epoch'] == 3
    assert [json.loads(r)['epoch'] for r in (out / 'log.jsonl').read_text().splitlines()] == [1, 2, 3]
    assert all(torch.equal(model['state_dict'][k], last['model'][k]) for k in last['model'])
    assert not list(out.glob('.*.partial-*'))


def test_the_lock_holder_removes_a_killed_runs_temporary_files_and_writes_its_own(run_args, tmp_path):
    common.main(baseline, run_args('--epochs', '2'))
    (tmp_path / 'run' / 'result.json').unlink()
    (tmp_path / 'run' / '.last.pt.partial-4242').write_bytes(b'half a checkpoint')
    assert runfolder.temporary(tmp_path / 'run' / 'last.pt').name == f".last.pt.partial-{os.getpid()}"
    common.main(baseline, run_args('--epochs', '2', '--resume'))
    assert not list((tmp_path / 'run').glob('.*.partial-*'))


def test_a_file_system_without_flock_is_said_in_one_line_and_the_run_goes_on(run_args, tmp_path, monkeypatch, capsys):
    def no_flock(*a):
        raise OSError(38, 'Function not implemented')
    monkeypatch.setattr(runfolder.fcntl, 'flock', no_flock)
    common.main(baseline, run_args())
    assert f"note: {tmp_path / 'run'} cannot be locked (Function not implemented)" in capsys.readouterr().out


def test_sigterm_while_saving_is_held_like_ctrl_c():
    done = []
    with runfolder.stop_signals():
        with pytest.raises(KeyboardInterrupt):
            with runfolder.ctrl_c_held():
                os.kill(os.getpid(), signal.SIGTERM)  # delivered here: held, not raised, not the end of the process
                done.append('log')
                done.append('last.pt')
    assert done == ['log', 'last.pt'] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def default_out(script, *argv):
    args, _, _, changed = tricks.parse(script, list(argv), common.RECIPE)
    args.arch, args.dataset = args.arch or 'resnet20', args.dataset or 'cifar10'
    return str(flags.run_dir(args, changed))


def test_the_default_folder_names_the_command(tmp_path):
    import mixup
    assert default_out(mixup) == 'runs/mixup-resnet20-cifar10-s0'
    assert default_out(mixup, '--alpha', '0.2') == 'runs/mixup-resnet20-cifar10-s0'  # the script's default
    assert default_out(mixup, '--alpha', '.3', '--seed', '2') == 'runs/mixup-alpha=0.3-resnet20-cifar10-s2'
    assert default_out(mixup, '--lr', '.05', '--alpha', '0.3') == default_out(mixup, '--alpha=0.30', '--lr', '0.05') \
        == 'runs/mixup-alpha=0.3-lr=0.05-resnet20-cifar10-s0'  # a fixed order, each value as result.json has it
    assert default_out(baseline, '--with', 'cosine', '--milestones', '0.3', '0.6', '--no-channels-last',
                       '--device', 'cpu', '--threads', '1') == 'runs/baseline+cosine-milestones=0.3,0.6-resnet20-cifar10-s0'
    teacher = default_out(distill, '--teacher', 'runs/t/s0/model.pt')  # a path: its file name and where it is
    assert teacher.startswith('runs/distill-teacher=model.pt.') and teacher.endswith('-resnet20-cifar10-s0')
    assert teacher == default_out(distill, '--teacher', './runs/t/s0/model.pt')
    assert teacher != default_out(distill, '--teacher', 'runs/u/s0/model.pt')  # another teacher, another folder
    long = default_out(baseline, '--weights', 'a' * 120 + '.pth')
    assert len(long) == len('runs/') + 100 and long.startswith('runs/baseline-weights=aaaa') and long[-9] == '-'
    assert long != default_out(baseline, '--weights', 'a' * 121 + '.pth')  # cut, but the digest tells them apart
    args, _, _, changed = tricks.parse(baseline, ['--data', str(tmp_path / 'intel') + '/'], common.RECIPE)
    args.arch, args.dataset = 'resnet18', 'folder'
    assert str(flags.run_dir(args, changed)) == 'runs/baseline-resnet18-intel-s0'  # folder data: its folder's name


def test_a_sweep_needs_no_out_and_the_same_sweep_with_resume_trains_nothing(folder, tmp_path, monkeypatch, capsys):
    import mixup
    monkeypatch.chdir(tmp_path)
    argv = ['--data', str(folder), '--epochs', '1', '--batch-size', '8', '--device', 'cpu',
            '--cache-dir', str(tmp_path / 'cache')]
    for alpha in ('0.1', '0.4'):
        common.main(mixup, argv + ['--alpha', alpha])
    assert sorted(p.name for p in (tmp_path / 'runs').iterdir()) == [
        f'mixup-alpha={a}-batch-size=8-epochs=1-resnet20-data-s0' for a in ('0.1', '0.4')]
    capsys.readouterr()
    for alpha in ('0.1', '0.4'):
        common.main(mixup, argv + ['--alpha', alpha, '--resume'])
    assert capsys.readouterr().out.count('is finished already') == 2


@pytest.mark.parametrize('flags_that_fail, message', [
    (['--amp', 'fp16'], 'fp16'), (['--weights', 'missing.pth'], 'missing.pth'),
    (['--with', 'distill', '--teacher', 'missing.pt'], 'missing.pt')])
def test_force_keeps_the_old_run_when_the_new_command_fails_its_checks(run_args, tmp_path, flags_that_fail, message):
    common.main(baseline, run_args())
    before = {p.name: p.read_bytes() for p in (tmp_path / 'run').iterdir()}
    with pytest.raises(SystemExit, match=message):
        common.main(baseline, run_args('--force', *flags_that_fail))
    assert {p.name: p.read_bytes() for p in (tmp_path / 'run').iterdir()} == before
    with pytest.raises(SystemExit, match=message):  # and a new folder is not left behind, nor its new parents
        common.main(baseline, run_args(*flags_that_fail, out='new/deeper/run'))
    assert not (tmp_path / 'new').exists()


def test_force_with_resume_is_refused_and_force_clears_the_old_runs_tensorboard(run_args, tmp_path):
    common.main(baseline, run_args('--tensorboard'))
    with pytest.raises(SystemExit, match='--force starts the run over and --resume carries it on: drop one'):
        common.main(baseline, run_args('--force', '--resume'))
    events = list((tmp_path / 'run' / 'tensorboard').iterdir())
    common.main(baseline, run_args('--force', '--tensorboard'))
    assert not set(events) & set((tmp_path / 'run' / 'tensorboard').iterdir())  # the old run's events are gone


def test_a_log_that_lost_the_epochs_last_pt_holds_is_named(run_args, tmp_path):
    common.main(baseline, run_args('--epochs', '2'))
    for f in ('result.json', 'log.jsonl'):
        (tmp_path / 'run' / f).unlink()
    with pytest.raises(SystemExit, match=r"log.jsonl holds 0 of the 2 epochs that last.pt holds: --force starts"):
        common.main(baseline, run_args('--epochs', '2', '--resume'))


def damage(path, how):
    if how == 'garbage':
        path.write_text('{"args": {"lr": 0.1}, "fin')
    elif how == 'no args':
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != 'args'}))
    elif how == 'a list':
        path.write_text('[1, 2, 3]')


@pytest.mark.parametrize('how', ['garbage', 'no args', 'a list'])
def test_resume_on_a_damaged_result_json_names_it_and_force(run_args, tmp_path, how):
    common.main(baseline, run_args())
    damage(tmp_path / 'run' / 'result.json', how)
    with pytest.raises(SystemExit, match=rf"{tmp_path / 'run' / 'result.json'}.*--force starts the run over"):
        common.main(baseline, run_args('--resume'))


def test_resume_on_a_damaged_log_or_a_last_pt_of_elsewhere_names_it_and_force(run_args, tmp_path):
    common.main(baseline, run_args('--epochs', '2'))
    out = tmp_path / 'run'
    (out / 'result.json').unlink()
    log = (out / 'log.jsonl').read_text()
    (out / 'log.jsonl').write_text('not json\n' + log)
    with pytest.raises(SystemExit, match=rf"{out / 'log.jsonl'}, line 1, is not an epoch's line .*: mend or delete"):
        common.main(baseline, run_args('--epochs', '2', '--resume'))
    (out / 'log.jsonl').write_text(log)
    for other in ([1, 2, 3], {'args': {'lr': 0.1}, 'model': {}}):  # not a checkpoint; another program's
        torch.save(other, out / 'last.pt')
        with pytest.raises(SystemExit, match=rf"{out / 'last.pt'} is not a checkpoint of this project: --force"):
            common.main(baseline, run_args('--epochs', '2', '--resume'))


@pytest.mark.parametrize('errno_, cause', [(28, 'no space left on its disk'), (30, 'Read-only file system')])
def test_a_save_that_cannot_be_written_leaves_no_temporary_and_says_to_resume(run_args, tmp_path, monkeypatch,
                                                                             errno_, cause):
    real = runfolder.torch.save

    def full(obj, path):
        real(obj, path)  # a part was written, then the disk was full
        if Path(path).name.startswith('.last.pt.partial-'):
            raise OSError(errno_, os.strerror(errno_))
    monkeypatch.setattr(runfolder.torch, 'save', full)
    with pytest.raises(SystemExit, match=rf"cannot write {tmp_path / 'run' / 'last.pt'} \({cause}\): free space or "
                                         r"fix that, then the same command with --resume carries on"):
        common.main(baseline, run_args())
    assert not list((tmp_path / 'run').glob('.*.partial-*'))


def test_out_on_a_read_only_file_system_is_one_line(run_args, tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(30, 'Read-only file system')
    monkeypatch.setattr(Path, 'mkdir', read_only)  # where runfolder.claimed makes the run folder
    with pytest.raises(SystemExit, match=r"cannot write the run folder .* \(Read-only file system\): give another"):
        common.main(baseline, run_args())


# ---------------------------------------------------------------- the trick contract

def trick(name, tmp_path, source):
    """A trick script written to tmp_path, importable by --with."""
    (tmp_path / f'{name}.py').write_text(source)
    return name


@pytest.fixture
def tricks_here(tmp_path, monkeypatch):
    monkeypatch.setattr(tricks, 'HERE', tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_hooks_compose_and_are_recorded(run_args, tricks_here, tmp_path):
    trick('halflr', tmp_path, "def add_args(p):\n    p.add_argument('--half', type=float, default=0.5)\n"
                              "def lr_factor(step, total, args):\n    return args.half\n")
    trick('nodecay', tmp_path, "DEFAULTS = {'milestones': []}\n"
                               "def param_groups(groups, model, args):\n"
                               "    return [dict(g, weight_decay=0.0) for g in groups]\n")
    result = common.main(baseline, run_args('--with', 'halflr', 'nodecay'))
    assert result['tricks'] == {'halflr': {'half': 0.5}, 'nodecay': {'milestones': []}}
    row = json.loads((tmp_path / 'run' / 'log.jsonl').read_text())
    assert row['lr'] == pytest.approx(0.05)


def test_two_tricks_that_set_one_default_differently_stop_naming_both(run_args, tricks_here, tmp_path):
    trick('lossa', tmp_path, "import torch.nn.functional as F\n"
                             "def loss(logits, targets, images, run):\n    return F.mse_loss(logits, targets)\n")
    trick('lossb', tmp_path, "def loss(logits, targets, images, run):\n    return logits.abs().mean()\n")
    with pytest.raises(SystemExit, match=r'lossa\.py and lossb\.py both replace the loss'):
        common.main(baseline, run_args('--with', 'lossa', 'lossb'))


def test_two_tricks_with_different_flag_defaults_need_the_flag_on_the_command_line(run_args, tricks_here, tmp_path):
    trick('lra', tmp_path, "DEFAULTS = {'lr': 0.01}\n")
    trick('lrb', tmp_path, "DEFAULTS = {'lr': 0.001}\n")
    with pytest.raises(SystemExit, match=r'lra\.py and lrb\.py both change lr \(0\.01 vs 0\.001\): pass --lr to choose'):
        common.main(baseline, run_args('--with', 'lra', 'lrb'))
    result = common.main(baseline, run_args('--with', 'lra', 'lrb', '--lr=0.02'))
    assert result['args']['lr'] == 0.02


def test_two_tricks_with_one_flag_or_one_model_switch_stop(run_args, tricks_here, tmp_path):
    for name in ('flaga', 'flagb'):
        trick(name, tmp_path, "def add_args(p):\n    p.add_argument('--alpha', type=float, default=1.0)\n")
    with pytest.raises(SystemExit, match=r'flaga\.py and flagb\.py both define --alpha'):
        common.main(baseline, run_args('--with', 'flaga', 'flagb'))
    for name, variant in (('vara', 'C'), ('varb', 'D')):
        trick(name, tmp_path, f"import models\ndef model(m, args):\n    return models.rebuild(m, variant='{variant}')\n")
    with pytest.raises(SystemExit, match=r"vara\.py and varb\.py both change the model's variant"):
        common.main(baseline, run_args('--with', 'vara', 'varb'))


def test_a_trick_made_by_copying_mixup_works_alone_and_under_with(run_args, tricks_here, tmp_path):
    (tmp_path / 'mymix.py').write_text((REPO / 'mixup.py').read_text())
    result = common.main(cosine, run_args('--with', 'mymix', '--alpha', '0.4'))
    assert result['tricks'] == {'cosine': {}, 'mymix': {'alpha': 0.4}}
    alone = subprocess.run([sys.executable, str(tmp_path / 'mymix.py'), *run_args(out='alone')], cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0 and json.loads((tmp_path / 'alone' / 'result.json').read_text())['script'] == 'mymix'


def test_with_given_twice_adds_both_and_common_is_no_trick(run_args, tmp_path):
    result = common.main(baseline, run_args('--with', 'cosine', '--with', 'labelsmooth', out='twice'))
    assert list(result['tricks']) == ['cosine', 'labelsmooth'] and result['args']['with_'] == ['cosine', 'labelsmooth']
    with pytest.raises(SystemExit, match=r'--with common: common\.py is the loop itself, not a trick'):
        common.main(baseline, run_args('--with', 'common'))


def test_unknown_trick_is_an_error(run_args):
    with pytest.raises(SystemExit, match=r'baseline\.py defines no trick; choose from .*cosine'):
        common.main(baseline, run_args('--with', 'baseline'))
    with pytest.raises(SystemExit, match=r'nosuch\.py is not a script here'):
        common.main(baseline, run_args('--with', 'nosuch'))


def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(run_args, tricks_here, tmp_path):
    trick('explode', tmp_path, "def lr_factor(step, total, args):\n    return 1e30 if step >= total // 2 else 1.0\n")
    with pytest.raises(SystemExit, match=r'loss became nan or inf at step \d+ \(epoch 2\).*holds epoch 1: lower --lr '
                                         r'\(or drop --amp\) and start over with --force'):
        common.main(baseline, run_args('--epochs', '2', '--subset', '16', '--with', 'explode'))
    assert torch.load(tmp_path / 'run' / 'last.pt', weights_only=True)['epoch'] == 1
    # the last step of epoch 1 throws the weights out: its loss was still finite, the test loss is not
    trick('lastexplodes', tmp_path, "def lr_factor(step, total, args):\n    return 1e38 if step == 1 else 1.0\n")
    with pytest.raises(SystemExit, match=r'the test loss became nan or inf \(epoch 1\): training diverged; nothing is '
                                         'saved yet'):
        common.main(baseline, run_args('--epochs', '2', '--subset', '16', '--with', 'lastexplodes', out='e1'))


# ---------------------------------------------------------------- tricks with start hooks, in either order

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


# ---------------------------------------------------------------- bad flags: one clear line

@pytest.mark.parametrize('flags, message', [
    (('--epochs', '0'), 'must be >= 1'),
    (('--lr', '-1'), 'must be a positive number'),
    (('--lr', 'nan'), 'must be a positive number'),
    (('--val-split', '1.5'), r'must be in \[0, 1\)'),
    (('--batch-size', '0'), 'must be >= 1'),
    (('--lighting', 'nan'), r'must be in \[0, 1\]'),
    (('--lighting', 'inf'), r'must be in \[0, 1\]'),
    (('--milestones', '2'), r'must be in \(0, 1\)'),
    (('--arch', 'resnet21'), 'invalid choice'),
    (('--epochs', '1.5'), "invalid int value: '1.5'"),
])
def test_nonsense_flags_stop_with_a_clear_line(run_args, flags, message, capsys):
    with pytest.raises(SystemExit) as e:
        common.main(baseline, run_args(*flags))
    assert e.value.code == 2
    assert __import__('re').search(message, capsys.readouterr().err)


def test_a_seed_out_of_range_is_an_argparse_range_error(run_args, capsys):
    with pytest.raises(SystemExit):
        common.main(baseline, run_args('--seed', '99999999999999999999'))
    assert 'argument --seed: must be in 0 .. 2**31 - 1, got 99999999999999999999' in capsys.readouterr().err


def test_out_naming_a_file_is_one_line(run_args, tmp_path):
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(SystemExit, match=r'--out .*afile is a file: give a folder for the run'):
        common.main(baseline, run_args(out='afile'))


# ---------------------------------------------------------------- devices and precision

@pytest.mark.parametrize('device, message', [('gpu', 'not a device'), ('mps', 'MPS is not available'),
                                             ('cuda:7', 'GPU|no CUDA GPU is visible')])
def test_a_device_that_is_not_here_is_one_clear_line(run_args, device, message):
    if device == 'mps' and torch.backends.mps.is_available():
        pytest.skip('this machine has MPS')
    with pytest.raises(SystemExit, match=message):
        common.main(baseline, run_args('--device', device))


def test_a_cuda_device_gets_its_index_before_set_device(monkeypatch):
    # torch.cuda.set_device refuses torch.device('cuda') (no index): every CUDA run stopped at start-up
    # on the first GPU check (an H200, 2026-11-26). Alone: cuda -> cuda:0; under torchrun: cuda:LOCAL_RANK.
    from support import device as devices
    chosen = []

    def set_device(device):
        if device.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        chosen.append(device)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'set_device', set_device)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    monkeypatch.setattr(devices.dist, 'init_process_group', lambda backend: None)
    for variable in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK'):
        monkeypatch.delenv(variable, raising=False)
    for name, index in [('cuda', 0), ('auto', 0), ('cuda:1', 1)]:
        args = types.SimpleNamespace(device=name, batch_size=8, threads=0)
        assert devices.start_processes(args) == (0, 1, torch.device('cuda', index))
    monkeypatch.setenv('WORLD_SIZE', '2'), monkeypatch.setenv('RANK', '1'), monkeypatch.setenv('LOCAL_RANK', '1')
    assert devices.start_processes(types.SimpleNamespace(device='cuda', batch_size=8, threads=0)) == \
        (1, 2, torch.device('cuda', 1))
    assert chosen == [torch.device('cuda', i) for i in (0, 0, 1, 1)]


def test_bf16_keeps_the_loss_and_bn_statistics_in_fp32(run_args):
    run = common.prepare(baseline, run_args('--amp', 'bf16'))  # on any CPU (emulated where it has no bf16 units)
    assert run.amp_dtype == torch.bfloat16
    images, targets = next(common.train_batches(run, 0))
    before = run.net.bn1.running_mean.clone()
    losses = common.train_step(run, images, targets)  # [loss, train_ce]
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    assert run.net.bn1.running_mean.dtype == torch.float32 and not torch.equal(run.net.bn1.running_mean, before)
    assert all(p.dtype == torch.float32 for p in run.net.parameters())  # the weights stay fp32; autocast casts


def test_amp_fp16_on_a_cpu_is_refused_in_one_line(run_args):
    with pytest.raises(SystemExit, match=r'--amp fp16: half precision is for CUDA GPUs; on cpu use --amp'):
        common.main(baseline, run_args('--amp', 'fp16'))


# ---------------------------------------------------------------- evaluate.py

def test_evaluate_refuses_a_file_that_is_not_a_model(tmp_path):
    torch.save({'x': torch.zeros(1)}, tmp_path / 'bad.pt')
    with pytest.raises(SystemExit, match='not a model.pt'):
        evaluate.main([str(tmp_path / 'bad.pt'), '--predict', str(tmp_path)])


# ---------------------------------------------------------------- real data, real process

def test_baseline_script_on_a_subset_of_real_cifar10(cifar_copy, tmp_path):
    """The one subprocess run: python baseline.py as a user types it, on real CIFAR-10 images."""
    proc = subprocess.run([sys.executable, 'baseline.py', '--data', str(cifar_copy), '--epochs', '2', '--batch-size', '50',
                           '--cache-dir', str(tmp_path / 'cache'), '--out', str(tmp_path / 'run'), '--device', 'cpu'],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert '1000 train / 300 test images, 10 classes' in proc.stdout
    assert lines[-1].startswith('final test accuracy: ')
    # 40 steps reach 21-25% (seeds 0-3); a pipeline that mixed up labels stays at 10 +- 1.7%
    assert float(lines[-1].split()[-1].rstrip('%')) > 15
    assert json.loads((tmp_path / 'run' / 'result.json').read_text())['args']['dataset'] == 'folder'


# ---------------------------------------------------------------- DDP

def test_ddp_on_cpu_with_two_gloo_processes(tmp_path):
    data = make_folder(tmp_path / 'data', classes=3, per_class=8, test_per_class=4)
    out = tmp_path / 'run'
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           'baseline.py', '--data', str(data), '--epochs', '2', '--batch-size', '8', '--device', 'cpu',
                           '--cache-dir', str(tmp_path / 'cache'), '--out', str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('final test accuracy') == 1  # only rank 0 prints
    assert 'epochs of 3 steps, batch 8' in proc.stdout  # 24 images / global batch 8
    rows = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2]  # only rank 0 writes
    result = json.loads((out / 'result.json').read_text())
    assert result['device'].endswith('x 2 processes') and result['world_size'] == 2
    # the test metrics were reduced over both ranks: one process on the saved model agrees
    metrics = evaluate.main([str(out / 'model.pt'), '--data', str(data), '--device', 'cpu',
                             '--cache-dir', str(tmp_path / 'cache')])
    assert metrics['test_acc'] == pytest.approx(rows[-1]['test_acc'])
    assert metrics['test_loss'] == pytest.approx(rows[-1]['test_loss'], rel=1e-4)


def test_evaluate_names_the_classes_that_differ(run_args, tmp_path):
    common.main(baseline, run_args())
    two = make_folder(tmp_path / 'two', classes=2)
    with pytest.raises(SystemExit, match=r'has other classes than the model was trained on \(missing: class2; new: none'):
        evaluate.main([str(tmp_path / 'run' / 'model.pt'), '--data', str(two), '--cache-dir', str(tmp_path / 'cache')])


# ---------------------------------------------------------------- what a run records of where it ran

def test_a_resume_with_other_processes_or_threads_says_so_in_a_note_and_an_old_run_says_nothing(run_args, tmp_path,
                                                                                               capsys):
    """world_size and threads are runtime flags that change numbers: last.pt and result.json record them, and a
    resume with others carries on with a note (a torchrun run's last.pt is stood in for by editing the count it
    records). A last.pt saved before they were recorded resumes without one."""
    import shutil
    flags = ('--epochs', '2', '--subset', '8', '--test-subset', '4')  # a step an epoch
    interrupted_in_epoch_2(baseline, run_args(*flags, out='changed'), epochs=2)
    saved = torch.load(tmp_path / 'changed' / 'last.pt', weights_only=True)
    assert (saved['world_size'], saved['threads']) == (1, torch.get_num_threads())
    shutil.copytree(tmp_path / 'changed', tmp_path / 'old')
    threads = saved['threads']
    torch.save({**saved, 'world_size': 2, 'threads': threads + 1}, tmp_path / 'changed' / 'last.pt')
    torch.save({k: v for k, v in saved.items() if k not in ('world_size', 'threads')}, tmp_path / 'old' / 'last.pt')
    capsys.readouterr()

    result = common.main(baseline, run_args(*flags, '--resume', out='changed'))
    out = capsys.readouterr().out
    assert 'last.pt was saved by a run of 2 processes, this one has 1: it carries on' in out
    assert f'last.pt was saved by a run of {threads + 1} CPU threads, this one has {threads}: it carries on' in out
    assert f'--threads {threads + 1} keeps them' in out
    assert (result['world_size'], result['threads']) == (1, threads)
    assert json.loads((tmp_path / 'changed' / 'result.json').read_text())['threads'] == threads

    common.main(baseline, run_args(*flags, '--resume', out='old'))
    assert 'note:' not in capsys.readouterr().out


def test_a_randaugment_magnitude_above_its_top_bin_is_refused_not_clamped(run_args, capsys):
    import randaugment
    with pytest.raises(SystemExit) as e:
        common.main(randaugment, run_args('--ra-m', '99'))
    assert e.value.code == 2 and 'argument --ra-m: must be in 0 .. 30, got 99' in capsys.readouterr().err


# ---------------------------------------------------------------- nothing outside the run is written or deleted

def files_of(folder):
    """Every file under folder, by its path inside it, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_no_write_goes_through_a_symbolic_link_planted_at_the_lock_or_a_temporary_name(run_args, tmp_path):
    victim = tmp_path / 'victim.txt'
    victim.write_text('mine')
    out = tmp_path / 'run'
    out.mkdir()
    (out / runfolder.LOCK).symlink_to(victim)
    with pytest.raises(SystemExit, match=rf"{out / runfolder.LOCK} is a symbolic link: a run writes nothing through "
                                         "one .*delete the link, or give another --out"):
        common.main(baseline, run_args())
    (out / runfolder.LOCK).unlink()
    for name in runfolder.SAVED:  # where written() puts each file first: the link goes, not what it points at
        runfolder.temporary(out / name).symlink_to(victim)
        runfolder.write_text_atomic(out / name, 'new\n')
        assert (out / name).read_text() == 'new\n' and not (out / name).is_symlink()
    assert victim.read_text() == 'mine' and sorted(p.name for p in out.iterdir()) == sorted(runfolder.SAVED)


def test_a_folder_that_is_not_a_runs_is_refused_before_anything_is_written_in_it(run_args, tmp_path):
    proj = tmp_path / 'proj'
    proj.mkdir()
    mine = {'results.tmp.txt': b'table', 'thesis.tmp.docx': b'chapter 1', '.last.pt.partial-4242': b'half'}
    for name, data in mine.items():
        (proj / name).write_bytes(data)
    for flags in ([], ['--resume'], ['--force']):
        with pytest.raises(SystemExit, match=rf"{proj} holds results.tmp.txt \(and 1 more\), which no run writes: a "
                                             "run's folder holds only its own files; give another --out"):
            common.main(baseline, run_args(*flags, out='proj'))
        assert files_of(proj) == mine  # not even the .lock, nor this project's own temporary deleted
    for name in ('results.tmp.txt', 'thesis.tmp.docx'):
        (proj / name).unlink()
    (proj / 'model.pt').write_bytes(b'my own model')
    with pytest.raises(SystemExit, match=r"holds a model.pt but no run \(no last.pt, no result.json\): the run would "
                                         "overwrite it; give another --out"):
        common.main(baseline, run_args(out='proj'))
    (proj / 'model.pt').unlink()
    (proj / 'tensorboard').symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(SystemExit, match=rf"{proj / 'tensorboard'} is a symbolic link"):
        common.main(baseline, run_args('--tensorboard', out='proj'))
    assert sorted(p.name for p in proj.iterdir()) == ['.last.pt.partial-4242', 'tensorboard']


def diverged_in_epoch_1(run, epoch):
    common.fail(common.report.diverged(run, epoch, "the loss became nan or inf at step 0"))


def ctrl_c(*a, **k):
    raise KeyboardInterrupt


def test_force_keeps_the_old_run_until_the_new_one_saved_an_epoch_and_puts_it_back_before(run_args, tmp_path,
                                                                                            monkeypatch):
    out = tmp_path / 'run'
    out.mkdir()  # an empty folder is a run's
    common.main(baseline, run_args('--subset', '8'))
    before = files_of(out)
    new = ['--subset', '8', '--lr', '0.05']
    back = rf"; --force replaced nothing: {out} holds the old run again$"
    for stopped, message in (('train_epoch', 'interrupted in epoch 1: nothing saved yet'),
                             ('train', r'training diverged; nothing is saved yet: .*start over with --force')):
        monkeypatch.setattr(common, stopped, ctrl_c if stopped == 'train_epoch' else diverged_in_epoch_1)
        with pytest.raises(SystemExit, match=message + '.*' + back):
            common.main(baseline, run_args('--force', *new))
        assert files_of(out) == before and not (out / runfolder.OLD_RUN).exists()
        monkeypatch.undo()
    with pytest.raises(SystemExit, match=r'finished run of another command \(lr: 0\.1 there, 0\.05 here\)'):
        common.main(baseline, run_args('--resume', *new))  # the run there is the old one, as the line said

    # once an epoch is saved the old run goes, and the new one resumes as any run
    interrupted_in_epoch_2(baseline, run_args('--force', *new, '--epochs', '2'), epochs=2)
    assert sorted(p.name for p in out.iterdir()) == ['.lock', 'last.pt', 'log.jsonl']
    assert common.main(baseline, run_args('--resume', *new, '--epochs', '2'))['args']['lr'] == 0.05


def test_a_force_killed_before_its_first_save_gets_the_old_run_back_at_the_next_start(run_args, tmp_path, capsys):
    out = tmp_path / 'run'
    common.main(baseline, run_args('--subset', '8'))
    before = files_of(out)
    runfolder.set_aside(out)  # as begin() does for --force; then a kill -9 in epoch 1, after log.jsonl was written
    (out / 'log.jsonl').write_text('{"epoch": 1}\n')
    capsys.readouterr()
    result = common.main(baseline, run_args('--resume', '--subset', '8'))
    assert result['final_test_acc'] == json.loads(before['result.json'])['final_test_acc']
    assert f"note: a --force run in {out} was stopped before it saved an epoch: the old run it replaced is back" in \
        capsys.readouterr().out
    assert files_of(out) == before
    # killed while it set the old run aside: what it moved goes back
    (out / runfolder.OLD_RUN_PARTIAL).mkdir()
    (out / 'result.json').rename(out / runfolder.OLD_RUN_PARTIAL / 'result.json')
    with runfolder.claimed(out, 0, print):
        assert files_of(out) == before
    # killed after its first save: the old run goes, the new one stays
    runfolder.set_aside(out)
    (out / 'last.pt').write_bytes(before['last.pt'])
    with runfolder.claimed(out, 0, print):
        assert sorted(p.name for p in out.iterdir()) == ['.lock', 'last.pt']


# ---------------------------------------------------------------- train_ce, and what a batch hook fills with

def test_train_ce_is_the_loss_where_no_trick_replaces_it_else_the_cross_entropy_against_the_hooks_targets(
        run_args, tricks_here, tmp_path, capsys, monkeypatch):
    """log.jsonl's train_ce: the loss itself under the baseline's loss (the epoch line leaves it out); beside a
    trick's loss, the cross-entropy against the targets the batch hooks made (mixup's here), also through the CUDA
    graph's step (its bookkeeping, on the CPU), and on the epoch line."""
    import mixup
    from support import cuda_graph

    def rows(out):
        return [json.loads(line) for line in (tmp_path / out / 'log.jsonl').read_text().splitlines()]
    common.main(baseline, run_args(out='plain'))
    assert [r['train_ce'] for r in rows('plain')] == [r['train_loss'] for r in rows('plain')]
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith('epoch ')]
    assert 'train_ce' not in line
    trick('doublece', tmp_path, "import torch.nn.functional as F\n"
                                "def loss(logits, targets, images, run):\n    return 2 * F.cross_entropy(logits, targets)\n")
    monkeypatch.setattr(cuda_graph, 'plan', lambda run: (False, 'eager (the graph bookkeeping, test)'))
    common.main(mixup, run_args('--with', 'doublece', out='double'))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('epoch ')]
    assert len(rows('double')) == len(lines) == 1
    for row, line in zip(rows('double'), lines):
        assert 2 * row['train_ce'] == row['train_loss']  # exactly: doubling rounds nothing
        assert f"train_loss {row['train_loss']:.4f}  train_ce {row['train_ce']:.4f}  " in line


def test_a_batch_hook_filling_with_the_mean_the_contract_names_leaves_zeros_once_normalised(run_args):
    """A cutout's fill: the contract points a batch hook at the table normalisation reads, and args carries no
    mean (nothing new in run folder names, result.json or the resume check)."""
    import inspect

    import augment
    assert 'augment.MEAN_STD[args.dataset][0]' in ' '.join(inspect.getsource(common).replace('#', ' ').split())

    def fill(images, targets, args):
        for channel, mean in enumerate(augment.MEAN_STD[args.dataset][0]):
            images[:, channel] = mean
        return images, targets
    run = common.prepare(baseline, run_args())
    run.tricks = [types.SimpleNamespace(batch=fill)]
    images, _ = next(common.train_batches(run, 0))
    assert images.abs().max() == 0
    assert not [name for name in vars(run.args) if 'mean' in name]


@pytest.mark.parametrize('flags_given, message', [
    (('--lighting', '1e200'), r"argument --lighting: must be in \[0, 1\] \(up to 10 x the paper's 0.1\), got 1e200"),
    (('--threads', '100000'), r'argument --threads: must be in 1 .. 1 \(the CPUs this process may use\), got 100000'),
    (('--threads', '2'), r'argument --threads: must be in 1 .. 1 \(the CPUs this process may use\), got 2')])
def test_lighting_that_cannot_train_and_threads_beyond_the_cpus_this_process_may_use_are_one_argparse_line(
        monkeypatch, capsys, flags_given, message):
    """--lighting 1e200 said "training diverged ... lower --lr"; --threads 100000 crashed (rc 139, no line) and 1000
    took 135 s a step on 2 cores. The CPUs are the affinity mask's (a container's share), here made 1."""
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0}, raising=False)
    with pytest.raises(SystemExit) as e:
        tricks.parse(baseline, list(flags_given), common.RECIPE)
    assert e.value.code == 2 and __import__('re').search(message, capsys.readouterr().err)
    assert tricks.parse(baseline, ['--threads', '1'], common.RECIPE)[0].threads == 1


@pytest.mark.parametrize('batch, world, images, empty', [
    (1024, 2, 24, 'process 1 would get none of them: give --batch-size 24 or less'),
    (1024, 4, 600, 'process 3 would get none of them: give --batch-size 600 or less'),
    (8, 8, 3, 'processes 3 to 7 would get none of them: run at most 3 processes'),
    (1024, 2, 600, None), (16, 2, 24, None), (1024, 1, 5, None)])
def test_a_global_batch_that_leaves_a_process_without_images_stops_naming_it_not_as_a_divergence(
        batch, world, images, empty):
    """torchrun --nproc_per_node 2 largebatch.py on 24 images: process 1's share of the one batch was empty, its
    loss nan, and the line said 'training diverged ... lower --lr'. Fewer images than the batch on one process,
    or shares that all hold some, train as before."""
    from support.device import check_shares
    if empty is None:
        check_shares(types.SimpleNamespace(batch_size=batch), world, images)
        return
    with pytest.raises(SystemExit, match=rf'^error: --batch-size {batch} over {world} processes: the train set has '
                                         rf'{images} images, fewer than the batch, so {empty}$'):
        check_shares(types.SimpleNamespace(batch_size=batch), world, images)
