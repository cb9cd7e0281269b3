"""tune.py: a 2-trial study end to end on tiny data, continued by a second invocation; pruning; failures."""
import json
import shlex
import subprocess
import sys

import pytest

import common
import mixup
import tune
from conftest import make_folder


@pytest.fixture
def study_argv(tmp_path):
    """argv for a study of mixup.py on the synthetic folder, 2 epochs a trial, everything in tmp_path."""
    data = make_folder(tmp_path / 'data')  # --threads 1: on 2 shared cores, 2 threads made an epoch 30x slower

    def argv(*ours):
        return ['mixup.py', '--search', 'lr=loguniform:0.01:0.4', 'alpha=uniform:0.1:1.0', '--dir',
                str(tmp_path / 'study'), *ours, '--', '--data', str(data), '--epochs', '2', '--batch-size', '8',
                '--subset', '16', '--device', 'cpu', '--threads', '1', '--cache-dir', str(tmp_path / 'cache')]
    return argv


def snapshot(study):
    return [(t.number, t.state.name, t.params, t.value) for t in study.trials]


def test_a_study_runs_end_to_end_and_a_second_invocation_continues_it(study_argv, tmp_path, capsys):
    optuna = pytest.importorskip('optuna')
    tune.main(study_argv('--trials', '2'))
    study_dir = tmp_path / 'study'
    study = optuna.load_study(study_name='mixup-lr-alpha', storage=f'sqlite:///{study_dir}/study.db')
    assert [t.state.name for t in study.trials] == ['COMPLETE', 'COMPLETE']
    for t in study.trials:  # each trial is a normal run in its own dir, scored on its last val_acc
        run = study_dir / f'trial-{t.number}'
        rows = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
        result = json.loads((run / 'result.json').read_text())
        assert t.value == rows[-1]['val_acc'] and t.intermediate_values == {1: rows[0]['val_acc'], 2: t.value}
        assert t.user_attrs['test_acc'] == result['final_test_acc']
        assert result['args']['val_split'] == 0.1  # added, since the flags had none
        assert result['args']['lr'] == float(tune.fmt(t.params['lr']))
        assert result['tricks']['mixup']['alpha'] == float(tune.fmt(t.params['alpha']))

    best = study.best_trial
    comment, command = (study_dir / 'best.txt').read_text().splitlines()
    assert comment.startswith(f'# study mixup-lr-alpha: trial {best.number} of 2, val_acc {best.value:.2f}%')
    words = shlex.split(command)
    assert words[:2] == ['python', 'mixup.py'] and '--out' not in words
    args, _, _ = common.parse(mixup, words[2:], common.RECIPE)  # ready to paste: the script takes it as it is
    assert args.lr == pytest.approx(best.params['lr'], rel=1e-3) and args.val_split == 0.1

    header, rule, *rows = (study_dir / 'trials.md').read_text().splitlines()
    assert header == '| trial | state | lr | alpha | val_acc | test_acc | seconds | note |'
    assert [r.split(' | ')[:2] for r in rows] == [['| 0', 'COMPLETE'], ['| 1', 'COMPLETE']]
    assert f'{study.trials[1].value:.2f}' in rows[1]
    printed = capsys.readouterr().out
    assert '| trial | state |' in printed and command in printed

    before = snapshot(study)
    tune.main(study_argv('--trials', '3'))
    study = optuna.load_study(study_name='mixup-lr-alpha', storage=f'sqlite:///{study_dir}/study.db')
    assert snapshot(study)[:2] == before and len(study.trials) == 3  # continued, not restarted
    assert study.trials[2].state.name == 'COMPLETE' and (study_dir / 'trial-2' / 'result.json').exists()
    assert study.trials[2].params != study.trials[0].params  # a continued study does not redraw trial 0
    assert len((study_dir / 'trials.md').read_text().splitlines()) == 2 + 3
    assert '2 trials so far, 1 more to run' in capsys.readouterr().out
    tune.main(study_argv('--trials', '3'))  # already there: nothing runs
    assert '3 trials so far, 0 more to run' in capsys.readouterr().out


def test_a_study_is_not_continued_with_other_fixed_flags(tmp_path):
    pytest.importorskip('optuna')
    tune.check_optuna()
    argv = ['mixup.py', '--search', 'lr=loguniform:0.01:0.4', '--dir', str(tmp_path / 'study'), '--']
    args, flags = tune.parse_args(argv + ['--epochs', '2'])
    args.dir.mkdir(parents=True)
    tune.open_study(args, flags)  # the study is made with these flags
    args, flags = tune.parse_args(argv + ['--epochs', '3'])
    with pytest.raises(SystemExit, match=r'study mixup-lr in .* was started with the flags --epochs 2 --val-split 0.1, '
                                         r'not these: give this search its own --study \(or --dir\)'):
        tune.open_study(args, flags)


def test_a_failed_run_fails_its_trial_with_its_last_stderr_line(study_argv, tmp_path):
    optuna = pytest.importorskip('optuna')
    argv = study_argv('--trials', '2')
    argv[argv.index('mixup.py')] = 'baseline.py'  # has no --alpha: the run stops on its flags
    with pytest.raises(SystemExit, match='no trial of study baseline-lr-alpha has completed'):
        tune.main(argv)
    study = optuna.load_study(study_name='baseline-lr-alpha', storage=f'sqlite:///{tmp_path}/study/study.db')
    (trial,) = study.trials  # a command that cannot run once is not tried again
    assert trial.state.name == 'FAIL'
    assert trial.user_attrs['error'].startswith('baseline.py: error: unrecognized arguments: --alpha')
    assert 'unrecognized arguments' in (tmp_path / 'study' / 'trials.md').read_text()


def test_a_pruned_trial_is_killed_and_recorded(study_argv, tmp_path, monkeypatch):
    optuna = pytest.importorskip('optuna')
    # the median pruner waits for 5 trials; this one prunes every trial at its first report
    monkeypatch.setattr(optuna.pruners, 'MedianPruner', lambda **kw: optuna.pruners.ThresholdPruner(lower=101.0))
    argv = study_argv('--trials', '1', '--prune-warmup', '0')
    argv[argv.index('--epochs') + 1] = '50'  # 50 epochs: the run is still going when its first epoch is read
    with pytest.raises(SystemExit, match='no trial of study mixup-lr-alpha has completed'):
        tune.main(argv)
    (trial,) = optuna.load_study(study_name='mixup-lr-alpha', storage=f'sqlite:///{tmp_path}/study/study.db').trials
    epoch = max(trial.intermediate_values)
    assert trial.state.name == 'PRUNED' and epoch < 50
    assert not (tmp_path / 'study' / 'trial-0' / 'result.json').exists()
    assert f'| pruned at epoch {epoch} |' in (tmp_path / 'study' / 'trials.md').read_text()


class FakeTrial:
    number = 0

    def __init__(self, prune):
        self.reports, self.prune = [], prune

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune


def test_pruning_kills_the_run_after_the_epoch_it_judged(tmp_path):
    optuna = pytest.importorskip('optuna')
    (tmp_path / 'log.jsonl').write_text(json.dumps({'epoch': 1, 'val_acc': 12.5}) + '\n')
    proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    trial = FakeTrial(prune=True)
    with pytest.raises(optuna.TrialPruned, match='pruned at epoch 1'):
        tune.watch(proc, trial, tmp_path / 'log.jsonl')
    assert proc.poll() is not None and trial.reports == [(1, 12.5)]
    # a run that has ended is read to its last epoch and never pruned
    (tmp_path / 'log.jsonl').write_text(''.join(json.dumps({'epoch': e, 'val_acc': e * 10.0}) + '\n' for e in (1, 2)))
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    assert [r['epoch'] for r in tune.watch(proc, FakeTrial(prune=True), tmp_path / 'log.jsonl')] == [1, 2]


def test_without_optuna_one_clear_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'optuna', None)  # `import optuna` raises ImportError
    with pytest.raises(SystemExit) as e:
        tune.main(['mixup.py', '--search', 'lr=loguniform:0.01:0.4'])
    assert e.value.code == 2
    assert capsys.readouterr().err == 'tune.py needs optuna: pip install optuna\n'


@pytest.mark.parametrize('argv, message', [
    (['mixup.py', '--search', 'lr=normal:0:1'], 'expected FLAG=KIND:LOW:HIGH'),
    (['mixup.py', '--search', 'lr=uniform:0.4:0.1'], 'needs LOW < HIGH'),
    (['mixup.py', '--search', 'lr=loguniform:0:1'], 'LOW > 0'),
    (['mixup.py', '--search', 'epochs=int:1:x'], 'expected two integers'),
    (['mixup.py', '--search', 'lr=uniform:0.1:0.4', '--', '--lr', '0.1'], '--lr is both searched and given'),
    (['mixup.py', '--search', 'lr=uniform:0.1:0.4', '--', '--out', 'x'], 'drop --out'),
    (['mixup.py', '--search', 'lr=uniform:0.1:0.4', '--', '--val-split', '0'], 'needs a val split above 0'),
    (['mixup.py', '--search', 'lr=uniform:0.1:0.4', '--', '--val-split', '0.2', '--val-split=0'],
     'needs a val split above 0'),  # the script would take the last one
    (['nosuch.py', '--search', 'lr=uniform:0.1:0.4'], 'nosuch.py: no such script'),
    (['mixup.py', '--example', 'awesome-work'], 'drop mixup.py'),
])
def test_nonsense_stops_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        tune.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_the_awesome_work_example_fills_in_the_nni_search():
    args, flags = tune.parse_args(['--example', 'awesome-work', '--', '--epochs', '30'])
    assert args.script == 'mixup.py' and args.study == 'mixup-lr-smoothing-alpha'
    assert args.space == [('lr', 'loguniform', [0.001, 1.0]), ('smoothing', 'uniform', [0.0, 0.2]),
                          ('alpha', 'uniform', [0.05, 1.0])]
    assert flags == ['--with', 'cosine', 'labelsmooth', '--arch', 'resnet32', '--weight-decay', '1e-4',
                     '--epochs', '30', '--val-split', '0.1']
    common.parse(mixup, flags + ['--lr', '0.1', '--smoothing', '0.1', '--alpha', '0.5'], common.RECIPE)  # the script takes them


def test_a_flag_given_twice_counts_as_its_last_value_as_argparse_takes_it():
    _, flags = tune.parse_args(['mixup.py', '--search', 'lr=uniform:0.1:0.4', '--', '--val-split', '0', '--val-split',
                                '0.2'])
    assert flags == ['--val-split', '0', '--val-split', '0.2']  # a split above 0: nothing added, nothing refused
