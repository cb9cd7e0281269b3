"""tools/: summarize.py, the GPU check's dry run, bench.py, tune.py (a study end to end, pruning, failures)."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import common
import mixup
import summarize
import tune
from conftest import REPO, make_folder


# ---------------------------------------------------------------- summarize.py

def fake_run(root, row, seed, acc, epochs=3):
    d = root / row / f's{seed}'
    d.mkdir(parents=True)
    result = {'final_test_acc': acc, 'tricks': {} if row == 'baseline' else {row: {}}, 'epochs': epochs,
              'wall_seconds': 90.0, 'device': 'cpu: test', 'torch': 'x', 'args': {'arch': 'resnet20', 'seed': seed, 'batch_size': 128}}
    (d / 'result.json').write_text(json.dumps(result))
    (d / 'log.jsonl').write_text(''.join(json.dumps({'epoch': e + 1, 'test_acc': acc - epochs + 1 + e}) + '\n'
                                         for e in range(epochs)))


def test_summarize_means_stds_deltas_and_noise(tmp_path, monkeypatch):
    root = tmp_path / 'cpu'
    for seed, (b, c, m) in enumerate([(70.0, 71.0, 73.0), (72.0, 71.4, 75.0)]):
        fake_run(root, 'baseline', seed, b)
        fake_run(root, 'cosine', seed, c)
        fake_run(root, 'mixup', seed, m)
    for seed, acc in enumerate([70.0, 71.0, 72.0]):  # a seed that the baseline lacks: not paired
        fake_run(root, 'labelsmooth', seed, acc)
    for seed, acc in enumerate([72.0, 76.0]):  # +2 and +4: 3 standard errors, inside t's 12.71 for 1 dof
        fake_run(root, 'warmup', seed, acc)
    (root / 'rows.txt').write_text('preset cpu\nnote short runs\nrow baseline baseline.py\nrow cosine cosine.py\n'
                                   'row mixup mixup.py\nrow labelsmooth labelsmooth.py\nrow warmup warmup.py\n'
                                   'row all warmup.py\n')
    text = summarize.main([str(root), '--out', str(tmp_path / 'docs')])
    lines = {line.split('|')[1].strip(): line for line in text.splitlines() if line.startswith('| ')}
    assert '71.00 +- 1.41' in lines['baseline']
    # paired by seed: the differences +1.0 and -0.6, mean +0.2, standard error 1.13 / sqrt(2) = 0.80
    # and its 95% interval: 12.71 standard errors for 2 seeds
    assert '+0.20 +- 10.17 *noise*' in lines['cosine']
    assert '+3.00 +- 0.00' in lines['mixup'] and '*noise*' not in lines['mixup']  # +3 at each seed
    assert '+0.00 +- 14.68 (unpaired) *noise*' in lines['labelsmooth']  # sqrt(1^2/3 + 1.41^2/2)
    assert '+3.00 +- 12.71 *noise*' in lines['warmup']
    assert '+0.75 (77.16 -> 77.91' in lines['cosine']
    assert 'Not finished yet: all' in text and 'note: short runs' in text
    assert '- device: cpu: test, torch x\n- time: 16.5 minutes' in text  # 11 runs of 90 s
    assert (tmp_path / 'docs' / 'ablation-cpu.md').read_text() == text


def test_summarize_shows_the_seeds_of_a_table_still_filling(tmp_path):
    root = tmp_path / 'recipe'
    for seed in (0, 1, 2):
        fake_run(root, 'baseline', seed, 70.0 + seed)
    fake_run(root, 'cosine', 0, 72.0)
    (root / 'rows.txt').write_text('preset recipe\nseeds 3\nrow baseline baseline.py\nrow cosine cosine.py\n'
                                   'row mixup mixup.py\n')
    text = summarize.main([str(root)])
    lines = {line.split('|')[1].strip(): line.split('|') for line in text.splitlines() if line.startswith('| ')}
    assert lines['baseline'][5].strip() == '3' and lines['cosine'][5].strip() == '1 of 3'
    assert 'Not finished yet: mixup' in text


def test_summarize_gives_what_readme_and_the_docstrings_quote(tmp_path, capsys):
    root = tmp_path / 'cpu'
    for seed, (b, w, n, lb) in enumerate([(70.0, 73.0, 69.0, 71.0), (72.0, 75.0, 73.0, 73.5)]):
        fake_run(root, 'baseline', seed, b)
        fake_run(root, 'warmup', seed, w)  # +3 at each seed: no noise
        fake_run(root, 'nobiasdecay', seed, n)  # -1 and +1: noise
        fake_run(root, 'largebatch+warmup', seed, lb)
    fake_run(root, 'cosine', 0, 72.0)  # 1 of 2 seeds: still training, quoted nowhere
    (root / 'rows.txt').write_text('preset cpu\nseeds 2\nrow baseline baseline.py\nrow warmup warmup.py\n'
                                   'row nobiasdecay nobiasdecay.py\nrow cosine cosine.py\nrow mixup mixup.py\n'
                                   'row largebatch+warmup largebatch.py --batch-size 1024\n')
    summarize.main([str(root), '--out', str(tmp_path / 'docs'), '--data-name', 'CIFAR-10'])
    runs, header, _, _ = summarize.read_runs(root)
    readme, measured = summarize.published(runs, header, 'docs/ablation-cpu.md', 'CIFAR-10')
    assert readme.splitlines()[2:] == [
        '| baseline | 71.00 +- 1.41 | - | - |',
        '| warmup | 74.00 +- 1.41 | +3.00 +- 0.00 | +0.16 |',
        '| nobiasdecay | 71.00 +- 2.83 | +0.00 +- 12.71 (noise) | -0.03 |',  # sd 1.41 / sqrt 2 x 12.71
        '| largebatch+warmup | 72.25 +- 1.77 | +1.25 +- 3.18 (noise) | +0.06 |', '',
        'Still training: cosine, mixup (the seeds done so far are on [the page](docs/ablation-cpu.md)).']
    assert measured['warmup.py'] == ['Measured here (docs/ablation-cpu.md, row warmup: resnet20, CIFAR-10, 3 epochs, '
                                     'batch 128, 2 seeds): 71.00 -> 74.00 top-1, +3.00 +- 0.00 (95% interval).']
    assert measured['nobiasdecay.py'][0].endswith('+0.00 +- 12.71 (95% interval: noise).')
    assert list(measured) == ['warmup.py', 'nobiasdecay.py', 'largebatch.py']  # the row's script, from rows.txt
    printed, _ = summarize.published(runs, header, tmp_path / 'docs' / 'ablation-cpu.md', 'CIFAR-10')
    assert printed in capsys.readouterr().out  # summarize prints them for README and the docstrings
    summarize.main([str(root), '--out', str(tmp_path / 'docs')])  # as run_all.sh calls it: the table alone
    assert "README's Results table" not in capsys.readouterr().out


def test_summarize_names_every_machine_and_reports_a_diverged_run(tmp_path):
    root = tmp_path / 'cpu'
    for seed in (0, 1):
        fake_run(root, 'baseline', seed, 70.0 + seed)
        fake_run(root, 'warmup', seed, 71.0 + seed)
    other = json.loads((root / 'warmup' / 's1' / 'result.json').read_text())
    (root / 'warmup' / 's1' / 'result.json').write_text(json.dumps({**other, 'device': 'cpu: other'}))
    (root / 'mixup').mkdir()
    (root / 'mixup' / 's0.log').write_text('== 2026-12-04 baseline.py\nerror: the loss became nan or inf at step 9 '
                                           '(epoch 1): training diverged; nothing is saved yet: lower --lr\n')
    fake_run(root, 'mixup', 1, 60.0)
    (root / 'labelsmooth').mkdir()
    (root / 'labelsmooth' / 's0.log').write_text('error: ... training diverged; ...\n')
    (root / 'rows.txt').write_text('preset cpu\nseeds 2\nrow baseline baseline.py\nrow warmup warmup.py\n'
                                   'row mixup mixup.py\nrow labelsmooth labelsmooth.py\n')
    text = summarize.main([str(root)])
    lines = {line.split('|')[1].strip(): line.split('|') for line in text.splitlines() if line.startswith('| ')}
    assert "- device: cpu: test, torch x (4 runs)\n- device: cpu: other, torch x (1 runs)" in text, text
    assert lines['mixup'][5].strip() == '1 of 2 (+1 diverged)'
    assert lines['labelsmooth'][3].strip() == 'diverged' and lines['labelsmooth'][5].strip() == '0 (+1 diverged)'
    assert 'Not finished yet' not in text


def test_summarize_draws_the_plot(tmp_path):
    pytest.importorskip('matplotlib')
    for seed in (0, 1):
        fake_run(tmp_path / 'cpu', 'baseline', seed, 70.0 + seed)
        fake_run(tmp_path / 'cpu', 'mixup', seed, 72.0 + seed)
    summarize.main([str(tmp_path / 'cpu')])
    assert (tmp_path / 'cpu' / 'ablation-cpu.png').stat().st_size > 10_000


def test_summarize_without_matplotlib_says_so(tmp_path, monkeypatch, capsys):
    fake_run(tmp_path / 'p', 'baseline', 0, 50.0)
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib now fails
    summarize.main([str(tmp_path / 'p')])
    assert 'matplotlib is not installed' in capsys.readouterr().out
    assert not (tmp_path / 'p' / 'ablation-p.png').exists()


def test_summarize_names_a_damaged_result_marks_its_row_and_goes_on(tmp_path, capsys):
    root = tmp_path / 'cpu'
    for seed in (0, 1):
        fake_run(root, 'baseline', seed, 70.0 + seed)
        fake_run(root, 'mixup', seed, 72.0 + seed)
        fake_run(root, 'cosine', seed, 71.0)
    (root / 'mixup' / 's1' / 'result.json').write_text('{"final_test_acc": 7')  # cut short, or edited by hand
    (root / 'cosine' / 's0' / 'result.json').write_text('[1, 2]')
    (root / 'cosine' / 's1' / 'result.json').write_text('{}')
    text = summarize.main([str(root)])
    lines = {line.split('|')[1].strip(): line.split('|') for line in text.splitlines() if line.startswith('| ')}
    assert lines['mixup'][5].strip() == '1 (1 damaged, left out)' and lines['mixup'][3].strip() == '72.00'
    assert lines['cosine'][5].strip() == '0 (2 damaged, left out)' and lines['cosine'][3].strip() == '-'
    assert f"- {root / 'mixup' / 's1' / 'result.json'} is not JSON (" in text
    assert f"- {root / 'cosine' / 's0' / 'result.json'} is not a run's result.json (it holds a JSON list)" in text
    assert f"- {root / 'cosine' / 's1' / 'result.json'} is not a run's result.json (it has no final_test_acc)" in text
    assert 'warning: ' + str(root / 'mixup' / 's1' / 'result.json') in capsys.readouterr().err


# ---------------------------------------------------------------- tools/gpu.sh

def test_the_gpu_check_runs_every_step_as_a_dry_run_on_the_cpu(smoke_data, tmp_path):
    data, root = smoke_data
    env = dict(os.environ, PYTHON=sys.executable, EXTRA=f"--cache-dir {root / 'cache'}", RESULTS=str(tmp_path / 'none'),
               RUNS=str(tmp_path / 'table'))
    proc = subprocess.run(['bash', 'tools/gpu.sh', str(data), str(tmp_path / 'out'), '--dry-run'], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / 'out' / 'summary.md').read_text()
    assert proc.stdout.rstrip().endswith(summary.rstrip())  # the table comes last
    cells = dict(line.strip('| ').split(' | ', 1) for line in summary.splitlines()[5:] if line.startswith('| '))
    assert list(cells) == ['GPU tests', 'bench resnet20 fp32', 'bench resnet20 --amp', 'bench resnet20 --no-channels-last',
                           'bench resnet56 fp32', 'ResNet-20 --amp runs at a time', 'run_all.sh recipe']
    assert 'skipped' in cells['GPU tests'] and 'failed' not in cells['GPU tests']
    assert re.fullmatch(r'a [\d.]+, b [\d.]+ img/s; a/b [\d.]+', cells['bench resnet20 fp32'])  # no graph on a CPU
    assert re.fullmatch(r'1: \d+ img/s; 2: \d+ img/s \(JOBS=[12]; a run about \d+ s, the teacher \d+ s\)',
                        cells['ResNet-20 --amp runs at a time'])
    assert cells['run_all.sh recipe'].startswith('3 of 3 runs finished')
    raw = tmp_path / 'out' / 'recipe'
    assert {'baseline/s0/result.json', 'distill/s0/log.jsonl', 'teacher/s0/result.json', 'rows.txt'} <= {
        str(p.relative_to(raw)) for p in raw.rglob('*')}
    assert not list(raw.rglob('*.pt'))  # no checkpoint: every distill run is done, the teacher's model.pt not needed
    assert (tmp_path / 'out' / 'ablation-recipe.md').exists()

    # a later slot carries on from raw results that lack the distill run but hold the teacher it needs
    earlier = tmp_path / 'earlier'
    shutil.copytree(raw, earlier, ignore=shutil.ignore_patterns('distill*'))
    tiny = ['--device', 'cpu', '--epochs', '1', '--subset', '32', '--test-subset', '32', '--batch-size', '8']
    subprocess.run([sys.executable, 'baseline.py', '--data', str(data), *tiny, '--cache-dir', str(root / 'cache'),
                    '--out', str(tmp_path / 'teacher')], cwd=REPO, check=True, capture_output=True)
    shutil.copy(tmp_path / 'teacher' / 'model.pt', earlier / 'teacher' / 's0' / 'model.pt')
    env.update(RESULTS='earlier', RUNS='table2')  # relative to where gpu.sh is started
    proc = subprocess.run(['bash', str(REPO / 'tools/gpu.sh'), str(data), 'later', '--dry-run'], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '| run_all.sh recipe | 3 of 3 runs finished' in proc.stdout
    later = tmp_path / 'later' / 'recipe'
    for row in ('baseline', 'mixup'):  # carried over as they were, not trained again
        assert (later / row / 's0' / 'result.json').read_bytes() == (earlier / row / 's0' / 'result.json').read_bytes()
    assert json.loads((later / 'distill' / 's0' / 'result.json').read_text())['epochs'] == 1
    assert not list(later.rglob('*.pt'))


# ---------------------------------------------------------------- bench.py

def test_bench_measures_all_three_loops_their_ratios_and_the_operations_the_loop_adds(run_args, capsys):
    """On a GPU a small net's step is paced by its kernel launches: the batch pipeline and the
    loop's bookkeeping must stay a few operations (39 before the step's losses became a list and
    the crop drew its offsets in one call; the H200's a/b was then 0.857)."""
    import bench
    result = bench.main(['--rounds', '1', '--steps', '2', '--workers', '0'] + run_args('--batch-size', '4'))
    assert {'a', 'b', 'c', 'a/b', 'a/c'} <= set(result) and all(result[k] > 0 for k in 'abc')
    assert 'a/b = ' in capsys.readouterr().out
    assert result['ops_b'] > 100  # the profiler saw the model step
    assert result['ops_b'] <= result['ops_a'] <= result['ops_b'] + 30  # the loop's step holds the model's


def test_with_a_path_to_a_tool_is_refused_in_one_line():
    """--with takes a trick's file by its path; a tool is a file that defines none of the contract's names."""
    bench = REPO / 'tools' / 'bench.py'
    with pytest.raises(SystemExit, match=rf"^error: --with {bench}: {bench} defines no trick: none of common\.py's "
                                         r"contract \(add_args, DEFAULTS, model, .*\)$"):
        common.parse(mixup, ['--with', str(bench)], common.RECIPE)


# ---------------------------------------------------------------- evaluate.py

def model_file(path, classes=('class0', 'class1', 'class2'), dataset='folder'):
    """A model.pt as a run saves it, for a resnet20 built afresh: evaluate.py needs no trained one."""
    import torch

    import models
    net = models.build('resnet20', len(classes))
    torch.save({'arch': 'resnet20', 'options': net.options, 'classes': list(classes), 'image_size': 32,
                'test_image_size': 32, 'load_size': 32, 'test_load_size': 32, 'mean': [0.5] * 3, 'std': [0.25] * 3,
                'dataset': dataset, 'data': None, 'state_dict': net.state_dict(), 'extra': {}}, path)
    return path


@pytest.mark.parametrize('where', ['in a missing folder', 'a folder'])
def test_evaluate_checks_where_the_csv_goes_before_predicting(where, folder, tmp_path, monkeypatch):
    import evaluate
    predicted = []
    monkeypatch.setattr(evaluate, 'predict', lambda *a: predicted.append(1) or [('a.jpg', 'class0', 1.0)])
    csv, message = {'in a missing folder': (tmp_path / 'nowhere' / 'p.csv', r'there is no folder .*nowhere: make it '
                                                                             'first, or give a file in a folder'),
                    'a folder': (tmp_path, r'is a folder: give a file, e.g. --csv .*predictions.csv')}[where]
    with pytest.raises(SystemExit, match=rf'^error: --csv .*{message}'):
        evaluate.main([str(model_file(tmp_path / 'model.pt')), '--predict', str(folder / 'test'), '--csv', str(csv),
                       '--device', 'cpu'])
    assert not predicted  # stopped before the predictions, not after them


def test_evaluate_needs_and_decodes_only_the_split_it_tests(folder, tmp_path, monkeypatch):
    """A tree with test/ alone will do; with train/ beside it, train/ is never decoded."""
    import shutil

    import evaluate
    from support import datasets
    decoded, real = [], datasets.decode_all
    monkeypatch.setattr(datasets, 'decode_all',
                        lambda files, *a: decoded.append(files[0][0].parts[-3]) or real(files, *a))  # the split
    model = model_file(tmp_path / 'model.pt')
    argv = [str(model), '--data', str(folder), '--device', 'cpu', '--cache-dir', str(tmp_path / 'cache')]
    full = evaluate.main(argv)
    assert decoded == ['test']
    shutil.rmtree(folder / 'train')
    assert evaluate.main(argv) == full


def test_evaluate_on_cifar_reads_only_its_test_batch(tmp_path, monkeypatch):
    import pickle

    import numpy as np
    import torchvision

    import evaluate
    folder = tmp_path / 'data' / 'cifar-10-batches-py'  # torchvision's layout, with no train batch in it
    folder.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8)
    (folder / 'test_batch').write_bytes(pickle.dumps({'data': images, 'labels': [0, 1, 2, 3]}))
    (folder / 'batches.meta').write_bytes(pickle.dumps({'label_names': [f'c{i}' for i in range(10)]}))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, '_check_integrity', lambda self: True)  # fake files
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda *a, **k: True)
    model = model_file(tmp_path / 'model.pt', classes=[f'c{i}' for i in range(10)], dataset='cifar10')
    metrics = evaluate.main([str(model), '--data', str(tmp_path / 'data'), '--device', 'cpu'])
    assert metrics['test_acc'] in (0, 25, 50, 75, 100)  # 4 images


# ---------------------------------------------------------------- tune.py

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
        assert (study_dir / f'trial-{t.number}.stdout.txt').exists()  # beside its folder: only a run's files in it
        assert result['args']['lr'] == float(tune.fmt(t.params['lr']))
        assert result['tricks']['mixup']['alpha'] == float(tune.fmt(t.params['alpha']))

    best = study.best_trial
    comment, command = (study_dir / 'best.txt').read_text().splitlines()
    assert comment.startswith(f'# study mixup-lr-alpha: trial {best.number} of 2, val_acc {best.value:.2f}%')
    words = shlex.split(command)
    assert words[:2] == ['python', 'mixup.py'] and '--out' not in words
    args = common.parse(mixup, words[2:], common.RECIPE)[0]  # ready to paste: the script takes it as it is
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
    (['mixup.py', '--search', 'lr=uniform:0.1:0.4', '--trials', '-3'], 'argument --trials: must be >= 1, got -3'),
])
def test_nonsense_stops_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        tune.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_the_awesome_work_example_gives_its_search_space_and_its_recipes_flags():
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


@pytest.mark.parametrize('argv, message', [
    (['--prune-warmup', '-1'], 'argument --prune-warmup: must be >= 0, got -1'),
    (['--seed', '-1'], 'argument --seed: must be in 0 .. 4294967295, got -1'),
    (['--seed', str(2 ** 32)], f'argument --seed: must be in 0 .. 4294967295, got {2 ** 32}'),
    (['--search', 'lr=uniform:0:inf'], '--search lr=uniform:0:inf: needs finite LOW and HIGH'),
    (['--search', 'lr=loguniform:1e-3:nan'], 'needs finite LOW and HIGH'),
    (['--', '--val-split', '-0'], '--val-split -0: trials are selected on val_acc, which needs a val split above 0'),
    (['--', '--val-split', '0e0'], 'needs a val split above 0'),
])
def test_tune_refuses_a_negative_warmup_a_seed_numpy_cannot_take_infinite_bounds_and_a_zero_val_split(argv, message,
                                                                                                       capsys):
    search = [] if '--search' in argv else ['--search', 'lr=uniform:0.1:0.4']
    with pytest.raises(SystemExit) as e:
        tune.parse_args(['mixup.py', *search, *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize('name', ['tq?a', 'a#b', 'a%20b', 'a b', 'x{y}'])
def test_tune_keeps_its_database_in_dir_whatever_characters_the_path_holds(name, tmp_path, monkeypatch):
    pytest.importorskip('optuna')
    monkeypatch.chdir(tmp_path)
    tune.check_optuna()
    args, flags = tune.parse_args(['mixup.py', '--search', 'lr=uniform:0.1:0.4', '--dir', name])
    args.dir.mkdir()
    tune.open_study(args, flags)
    assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*')] == [name, f'{name}/study.db']


def upscale(*argv):
    import upscale
    return upscale.main(list(map(str, argv)))


def test_upscale_refuses_to_write_into_its_source_and_a_size_of_0_in_one_line(tmp_path, capsys):
    source = make_folder(tmp_path / 'data', per_class=2, test_per_class=1)
    images = sorted(source.rglob('*.*'))
    for dest, how in ((source, 'is'), (source / 'big', 'is inside'), (tmp_path, 'holds')):
        with pytest.raises(SystemExit, match=rf"^error: the copy's folder {dest} {how} the source {source}: the copy "
                                             "would overwrite its images; give a folder outside it$"):
            upscale(source, dest)
    with pytest.raises(SystemExit) as e:
        upscale(source, tmp_path / 'data-40', '--size', '0')
    assert e.value.code == 2 and capsys.readouterr().err == \
        'upscale.py: error: argument --size: must be >= 1, got 0 (see --help)\n'
    upscale(source, tmp_path / 'data-40', '--size', '40', '--per-class', '1')  # beside it, named alike: fine
    assert sorted(source.rglob('*.*')) == images and len(list((tmp_path / 'data-40').rglob('*.jpg'))) == 6


# ---------------------------------------------------------------- summarize.py: what it refuses to pool

def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_summarize_refuses_two_folders_of_one_seed_and_a_row_pooling_other_precisions(tmp_path):
    root = tmp_path / 'cpu'
    for seed in (0, 1):
        fake_run(root, 'baseline', seed, 70.0 + seed)
        fake_run(root, 'cosine', seed, 71.0 + seed)
    shutil.copytree(root / 'cosine' / 's0', root / 'cosine' / 's2')  # a copy: seed 0 twice
    with pytest.raises(SystemExit, match=r"s0 and .*s2 both hold cosine's seed 0: delete the one that is a copy"):
        summarize.main([str(root)])
    shutil.rmtree(root / 'cosine' / 's2')
    edit_json(root / 'cosine' / 's1' / 'result.json', precision='bfloat16')
    edit_json(root / 'cosine' / 's0' / 'result.json', precision='float32')
    with pytest.raises(SystemExit, match=r"cosine's runs differ in precision .*a row pools runs of one setting"):
        summarize.main([str(root)])


def test_summarize_prints_no_delta_between_rows_of_other_epochs_or_data(tmp_path):
    root = tmp_path / 'cpu'
    for seed in (0, 1):
        fake_run(root, 'baseline', seed, 77.0 + seed, epochs=6)
        fake_run(root, 'cosine', seed, 11.0 + seed, epochs=1)  # 1 epoch against the baseline's 6
        fake_run(root, 'mixup', seed, 76.0 + seed, epochs=6)
        for row in ('baseline', 'cosine', 'mixup'):
            edit_json(root / row / f's{seed}' / 'result.json', data={'train': 50000 if row != 'mixup' else 200})
    lines = {line.split('|')[1].strip(): line.split('|') for line in summarize.main([str(root)]).splitlines()
             if line.startswith('| ')}
    assert lines['cosine'][4].strip() == '- (other epochs than baseline)'
    assert lines['mixup'][4].strip() == '- (other data than baseline)'


@pytest.mark.parametrize('acc', ['"77.3"', 'null'])
def test_summarize_leaves_out_a_result_whose_accuracy_is_no_number_or_not_its_logs(tmp_path, acc):
    root = tmp_path / 'cpu'
    for seed in (0, 1):
        fake_run(root, 'baseline', seed, 70.0 + seed)
    (root / 'baseline' / 's0' / 'result.json').write_text(
        (root / 'baseline' / 's0' / 'result.json').read_text().replace('"final_test_acc": 70.0', f'"final_test_acc": {acc}'))
    edit_json(root / 'baseline' / 's1' / 'result.json', final_test_acc=99.99)
    with pytest.raises(SystemExit, match='every run under .* is damaged'):
        summarize.main([str(root)])
    fake_run(root, 'baseline', 2, 72.0)
    text = summarize.main([str(root)])
    assert f"gives final_test_acc {acc}, not a number" in text
    assert "says 99.99%, but the last epoch of its log.jsonl says 71.0%" in text


def test_summarize_tells_two_rows_of_one_trick_apart_by_the_flags_that_differ_between_them(tmp_path):
    root = tmp_path / 'cpu'
    for seed in (0, 1):
        fake_run(root, 'baseline', seed, 70.0 + seed)
        for row, warmup in (('largebatch', 0.0), ('largebatch+warmup', None)):
            fake_run(root, row, seed, 60.0 + seed)
            edit_json(root / row / f's{seed}' / 'result.json',
                      tricks={'largebatch': {'warmup_epochs': warmup, 'batch_size': 1024}})
    cells = {line.split('|')[1].strip(): line.split('|')[2].strip() for line in summarize.main([str(root)]).splitlines()
             if line.startswith('| ') and not line.startswith('| Row')}
    # the batch size is the same in both rows: said by the row's name and flags, not here
    assert cells == {'baseline': '-', 'largebatch': 'largebatch warmup-epochs=0.0',
                     'largebatch+warmup': 'largebatch warmup-epochs=default'}


def test_summarize_with_out_at_a_file_or_under_one_is_one_line(tmp_path):
    fake_run(tmp_path / 'cpu', 'baseline', 0, 70.0)
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(SystemExit, match=r'^error: --out .*afile is a file: give a folder for the table and plot$'):
        summarize.main([str(tmp_path / 'cpu'), '--out', str(tmp_path / 'afile')])
    with pytest.raises(SystemExit, match=r'^error: --out .*afile/sub: cannot make that folder \(Not a directory\): '
                                         r'give another$'):
        summarize.main([str(tmp_path / 'cpu'), '--out', str(tmp_path / 'afile' / 'sub')])


def test_evaluate_leaves_top5_out_at_5_classes_or_fewer_as_training_does(folder, tmp_path, capsys):
    import evaluate
    metrics = evaluate.main([str(model_file(tmp_path / 'model.pt')), '--data', str(folder), '--device', 'cpu',
                             '--cache-dir', str(tmp_path / 'cache')])
    assert set(metrics) == {'test_loss', 'test_acc'}  # 3 classes: top-5 is 100% whatever the net
    assert 'top-5' not in capsys.readouterr().out


@pytest.mark.parametrize('what', ['missing', 'a file'])
def test_evaluate_predict_on_a_missing_path_or_a_file_says_so_not_that_it_holds_no_images(what, folder, tmp_path):
    import evaluate
    path = {'missing': tmp_path / 'nowhere', 'a file': next((folder / 'test' / 'class1').iterdir())}[what]
    message = {'missing': 'does not exist: give the folder of images to label',
               'a file': 'is a file: give the folder that holds the images to label'}[what]
    with pytest.raises(SystemExit, match=rf'^error: --predict .* {message}$'):
        evaluate.main([str(model_file(tmp_path / 'model.pt')), '--predict', str(path), '--csv',
                       str(tmp_path / 'p.csv'), '--device', 'cpu'])


def test_summarize_compare_gives_each_tricks_delta_in_both_tables_for_the_rows_both_hold(tmp_path):
    short, long = tmp_path / 'cpu', tmp_path / 'recipe'
    for seed in (0, 1):
        for row, acc in (('baseline', 70.0), ('cosine', 71.0 + seed), ('mixup', 69.0), ('distill', 72.0)):
            fake_run(short, row, seed, acc + seed, epochs=6)
        for row, acc in (('baseline', 90.0), ('cosine', 90.5), ('ema', 91.0), ('distill', 91.0)):
            fake_run(long, row, seed, acc + seed, epochs=30)
            edit_json(long / row / f's{seed}' / 'result.json', precision='bfloat16')
    (long / 'rows.txt').write_text('preset recipe\nseeds 2\n')
    (short / 'rows.txt').write_text('preset cpu\nseeds 2\n')
    fake_run(short, 'teacher', 0, 80.0, epochs=46)
    fake_run(long, 'teacher', 0, 93.0, epochs=30)
    edit_json(long / 'teacher' / 's0' / 'result.json', args={'arch': 'resnet56', 'seed': 0})
    summarize.main([str(long), '--out', str(tmp_path / 'out'), '--compare', str(short)])
    page = (tmp_path / 'out' / 'ablation-recipe-vs-cpu.md').read_text()
    rows = [line for line in page.splitlines() if line.startswith('| ')]
    assert rows == ['| Row | recipe: delta | cpu: delta |', '| cosine | +0.50 +- 0.00 | +1.50 +- 6.36 *noise* |',
                    '| distill | +1.00 +- 0.00 | +2.00 +- 0.00 |']
    assert ("- distill: the tables' teachers differ (recipe: resnet56, 30 epochs, 93.00%; cpu: resnet20, 46 epochs, "
            "80.00%): its change between them is the teacher's as well as the schedule's") in page
    assert '- the tables train in other precisions (bfloat16, not recorded)' in page  # fake_run records none
    assert '- recipe: resnet20, 30 epochs, batch 128, bfloat16;' in page


def test_summarize_compare_of_tables_that_share_only_the_baseline_is_one_line(tmp_path):
    for root, acc in ((tmp_path / 'recipe', 90.0), (tmp_path / 'cpu', 70.0)):
        fake_run(root, 'baseline', 0, acc)
    fake_run(tmp_path / 'cpu', 'cosine', 0, 71.0)
    with pytest.raises(SystemExit, match=r"^error: the tables share no row but baseline: there is no trick to compare "
                                         r"yet \(train one of the other table's rows in this one first\)$"):
        summarize.main([str(tmp_path / 'recipe'), '--out', str(tmp_path / 'out'), '--compare', str(tmp_path / 'cpu')])
    assert not (tmp_path / 'out' / 'ablation-recipe-vs-cpu.png').exists()


def test_summarize_compare_leaves_out_a_row_whose_seeds_are_not_all_in_and_says_so(tmp_path):
    short, long = tmp_path / 'cpu', tmp_path / 'recipe'
    for root, base, seeds in ((short, 70.0, (0, 1)), (long, 90.0, (0, 1))):
        (root.mkdir(parents=True), (root / 'rows.txt').write_text(f'preset {root.name}\nseeds 2\n' + ''.join(
            f'row {row} {row}.py\n' for row in ('baseline', 'cosine', 'labelsmooth', 'mixup'))))
        for seed in seeds:
            fake_run(root, 'baseline', seed, base + seed)
            fake_run(root, 'cosine', seed, base + 1 + seed)
    for row in ('mixup', 'labelsmooth'):  # both seeds in the short table; one of two in the long one, and none
        fake_run(short, row, 0, 69.0)
        fake_run(short, row, 1, 69.0)
    fake_run(long, 'mixup', 0, 91.0)
    summarize.main([str(long), '--out', str(tmp_path / 'out'), '--compare', str(short)])
    page = (tmp_path / 'out' / 'ablation-recipe-vs-cpu.md').read_text()
    assert [line.split(' |')[0] for line in page.splitlines() if line.startswith('| ')][1:] == ['| cosine']
    assert '- still training, left out until their seeds are all in: labelsmooth, mixup\n' in page
    (long / 'baseline' / 's1').rename(tmp_path / 'away')
    with pytest.raises(SystemExit, match=r"^error: the tables share no baseline row with all its seeds in: there is "
                                         r"nothing to compare a trick to yet$"):
        summarize.main([str(long), '--out', str(tmp_path / 'out'), '--compare', str(short)])
