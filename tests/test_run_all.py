"""run_all.sh (the smoke preset CI runs), its resumability, summarize.py, and DDP on CPU."""
import json
import os
import re
import signal
import subprocess
import sys
import shutil
import time

import pytest
import torch
import torchvision

import evaluate
import summarize
from conftest import REPO, make_folder


@pytest.fixture(scope='module')
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('smoke')
    return make_folder(root / 'data', classes=3, per_class=8, test_per_class=4), root


def run_all(root, data, out, rows=None, extra='', jobs=2, **popen):
    env = dict(os.environ, DATA=str(data), OUT=str(out), EXTRA=f"--device cpu --cache-dir {root / 'cache'} {extra}",
               JOBS=str(jobs), PYTHON=sys.executable)
    if rows:
        env['ROWS'] = rows
    return subprocess.Popen(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def test_a_note_written_over_two_lines_in_run_all_sh_stays_one_line_in_rows_txt(tmp_path):
    # PYTHON=false: every run fails at once; rows.txt is written before them
    env = dict(os.environ, OUT=str(tmp_path / 'out'), PYTHON='false', SEEDS='1', ROWS='baseline')
    subprocess.run(['bash', 'run_all.sh', 'resnet18'], cwd=REPO, env=env, capture_output=True, timeout=60)
    lines = (tmp_path / 'out' / 'rows.txt').read_text().splitlines()
    notes = [line for line in lines if line.startswith('note ')]
    assert any('93.10 (baseline)' in n and '94.63 (all four): one run each' in n for n in notes), notes
    keys = {line.split()[0] for line in lines}
    assert keys <= {'preset', 'command', 'out', 'data', 'flags', 'jobs', 'seeds', 'note', 'row'}, keys


def test_run_all_sh_edited_in_place_while_it_runs_goes_on_as_it_was(tmp_path):
    """bash reads a script as it goes: an editor that rewrites run_all.sh in place during a run of
    hours would shift what bash reads next, unless bash has read it all before it starts."""
    script = tmp_path / 'run_all.sh'
    script.write_text((REPO / 'run_all.sh').read_text())
    fake = tmp_path / 'python'  # each call adds a line at the top of the script, in place; then fails
    fake.write_text(f'#!/bin/sh\nold=$(cat {script})\nprintf "# a line added by an edit\\n%s\\n" "$old" > {script}\n'
                    'exit 1\n')
    fake.chmod(0o755)
    env = dict(os.environ, OUT=str(tmp_path / 'out'), PYTHON=str(fake), ROWS='baseline')
    proc = subprocess.run(['bash', str(script), 'smoke'], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().endswith('failed: baseline s0 summarize'), proc.stderr
    assert script.read_text().count('# a line added by an edit') >= 2  # the fake ran, and edited it


def log_row(path):
    return json.loads((path / 'log.jsonl').read_text().splitlines()[-1])


def test_smoke_preset_runs_every_row_two_at_a_time_and_writes_the_table(smoke_data):
    data, root = smoke_data
    out = root / 'runs'
    proc = run_all(root, data, out)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    rows = [line.split()[1] for line in (out / 'rows.txt').read_text().splitlines() if line.startswith('row ')]
    assert len(rows) == 17 and 'distill' in rows and 'all' in rows
    for row in rows:
        result = json.loads((out / row / 's0' / 'result.json').read_text())
        assert result['epochs'] == 1
    assert (out / 'teacher' / 's0' / 'model.pt').exists()
    # two at a time: the teacher ran beside the first row, and only distill waited for it
    assert '== teacher -> ' in output and '(job 2 of 2)' in output
    began = {p.parent.name: p.stat().st_mtime for p in out.glob('*/s0.command')}
    ended = {p.parent.parent.name: p.stat().st_mtime for p in out.glob('*/s0/result.json')}
    assert began['baseline'] < ended['teacher'] and began['teacher'] < ended['baseline']  # at once
    assert began['distill'] >= ended['teacher']
    # one at a time gives the same figures (the same threads: each of two runs had one core)
    alone = root / 'alone'
    proc = run_all(root, data, alone, 'baseline mixup distill', extra='--threads 1', jobs=1)
    output1, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and 'job ' not in output1, output1
    for row in ('teacher', 'baseline', 'mixup', 'distill'):
        a, b = log_row(out / row / 's0'), log_row(alone / row / 's0')
        assert (a['train_loss'], a['test_loss'], a['test_acc']) == (b['train_loss'], b['test_loss'], b['test_acc'])
    table = (out / 'ablation-smoke.md').read_text()
    assert all(f"| {row} |" in table for row in rows)
    # a second invocation redoes nothing
    stamps = {p: p.stat().st_mtime_ns for p in out.glob('*/s0/result.json')}
    again = run_all(root, data, out)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and output.count(': done (') == len(rows) + 1
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob('*/s0/result.json')}
    # other flags: a flag that changes only how it runs reuses the row, one that changes the result is refused
    same = run_all(root, data, out, 'baseline', extra='--threads 2')
    output, _ = same.communicate(timeout=300)
    assert same.returncode == 0 and 'is finished already' in (out / 'baseline' / 's0.log').read_text(), output
    other = run_all(root, data, out, 'baseline', extra='--lr 0.05')
    output, _ = other.communicate(timeout=300)
    assert other.returncode == 1 and 'finished run of another command (lr: 0.1 there, 0.05 here)' in output
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob('*/s0/result.json')}


def test_intel_preset_runs_every_row_offline(tmp_path):
    data = make_folder(tmp_path / 'intel', classes=3, per_class=4, test_per_class=2, sizes=((90, 80), (96, 96)))
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / 'r18.pth')
    env = dict(os.environ, DATA=str(data), OUT=str(tmp_path / 'runs'), SEEDS='1', WEIGHTS=str(tmp_path / 'r18.pth'),
               PYTHON=sys.executable,
               EXTRA=f"--device cpu --cache-dir {tmp_path / 'cache'} --arch resnet18 --epochs 1 --batch-size 6 "
                     "--image-size 72")
    proc = subprocess.run(['bash', 'run_all.sh', 'intel'], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = 'scratch pretrained +adam +warmup +cosine +ls +mixup fixres'.split()
    assert sorted(p.parent.parent.name for p in (tmp_path / 'runs').glob('*/s0/result.json')) == sorted(rows)
    adam = json.loads((tmp_path / 'runs' / '+adam' / 's0' / 'result.json').read_text())
    assert adam['args']['lr'] == 1e-4 and adam['args']['weight_decay'] == 1e-4 and adam['args']['adam']


def test_a_killed_run_all_finishes_without_redoing_finished_rows(smoke_data):
    data, root = smoke_data
    out = root / 'killed'
    rows = 'baseline cosine mixup labelsmooth warmup zerogamma nobiasdecay resnet_d'
    proc = run_all(root, data, out, rows, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob('*/s0/result.json')):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does, as soon as the first row is done, two runs in flight
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and 'run it again to carry on' in output, output
    finished = {p: p.stat().st_mtime_ns for p in out.glob('*/s0/result.json')}
    assert 1 <= len(finished) < 8
    again = run_all(root, data, out, rows)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert len(list(out.glob('*/s0/result.json'))) == 8
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())


def fake_run(root, row, seed, acc, epochs=3):
    d = root / row / f's{seed}'
    d.mkdir(parents=True)
    result = {'final_test_acc': acc, 'tricks': {} if row == 'baseline' else {row: {}}, 'epochs': epochs,
              'wall_seconds': 90.0, 'device': 'cpu: test', 'torch': 'x', 'args': {'arch': 'resnet20', 'seed': seed}}
    (d / 'result.json').write_text(json.dumps(result))
    (d / 'log.jsonl').write_text(''.join(json.dumps({'epoch': e + 1, 'test_acc': acc - 2 + e}) + '\n'
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
    assert '+0.20 +- 0.80 *noise*' in lines['cosine']
    assert '+3.00 +- 0.00' in lines['mixup'] and '*noise*' not in lines['mixup']  # +3 at each seed
    assert '+0.00 +- 1.15 (unpaired) *noise*' in lines['labelsmooth']  # sqrt(1^2/3 + 1.41^2/2)
    assert '+3.00 +- 1.00 *noise*' in lines['warmup']
    assert '+0.75 (77.16 -> 77.91' in lines['cosine']
    assert 'Not finished yet: all' in text and 'note: short runs' in text
    assert (tmp_path / 'docs' / 'ablation-cpu.md').read_text() == text


def test_summarize_shows_the_seeds_of_a_table_still_filling(tmp_path):
    root = tmp_path / 'gpu-short'
    for seed in (0, 1, 2):
        fake_run(root, 'baseline', seed, 70.0 + seed)
    fake_run(root, 'cosine', 0, 72.0)
    (root / 'rows.txt').write_text('preset gpu-short\nseeds 3\nrow baseline baseline.py\nrow cosine cosine.py\n'
                                   'row mixup mixup.py\n')
    text = summarize.main([str(root)])
    lines = {line.split('|')[1].strip(): line.split('|') for line in text.splitlines() if line.startswith('| ')}
    assert lines['baseline'][5].strip() == '3' and lines['cosine'][5].strip() == '1 of 3'
    assert 'Not finished yet: mixup' in text


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
    assert result['device'].endswith('x 2 processes')
    # the test metrics were reduced over both ranks: one process on the saved model agrees
    metrics = evaluate.main([str(out / 'model.pt'), '--data', str(data), '--device', 'cpu',
                             '--cache-dir', str(tmp_path / 'cache')])
    assert metrics['test_acc'] == pytest.approx(rows[-1]['test_acc'])
    assert metrics['test_loss'] == pytest.approx(rows[-1]['test_loss'], rel=1e-4)


def test_the_gpu_check_runs_every_step_as_a_dry_run_on_the_cpu(smoke_data, tmp_path):
    data, root = smoke_data
    env = dict(os.environ, PYTHON=sys.executable, EXTRA=f"--cache-dir {root / 'cache'}", RESULTS=str(tmp_path / 'none'))
    proc = subprocess.run(['bash', 'tools/gpu.sh', str(data), str(tmp_path / 'out'), '--dry-run'], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / 'out' / 'summary.md').read_text()
    assert proc.stdout.rstrip().endswith(summary.rstrip())  # the table comes last
    cells = dict(line.strip('| ').split(' | ', 1) for line in summary.splitlines()[5:] if line.startswith('| '))
    assert list(cells) == ['GPU tests', 'bench resnet20 fp32', 'bench resnet20 --amp', 'bench resnet20 --no-channels-last',
                           'bench resnet56 fp32', 'ResNet-20 --amp runs at a time', 'run_all.sh gpu-short']
    assert 'skipped' in cells['GPU tests'] and 'failed' not in cells['GPU tests']
    assert re.fullmatch(r'a [\d.]+, b [\d.]+ img/s; a/b [\d.]+', cells['bench resnet20 fp32'])  # no graph on a CPU
    assert re.fullmatch(r'1: \d+ img/s; 2: \d+ img/s \(JOBS=[12]; a run about \d+ s, the teacher \d+ s\)',
                        cells['ResNet-20 --amp runs at a time'])
    assert cells['run_all.sh gpu-short'].startswith('3 of 3 runs finished')
    raw = tmp_path / 'out' / 'gpu-short'
    assert {'baseline/s0/result.json', 'distill/s0/log.jsonl', 'teacher/s0/result.json', 'rows.txt'} <= {
        str(p.relative_to(raw)) for p in raw.rglob('*')}
    assert not list(raw.rglob('*.pt'))  # no checkpoint: every distill run is done, the teacher's model.pt not needed
    assert (tmp_path / 'out' / 'ablation-gpu-short.md').exists()

    # a later slot carries on from raw results that lack the distill run but hold the teacher it needs
    earlier = tmp_path / 'earlier'
    shutil.copytree(raw, earlier, ignore=shutil.ignore_patterns('distill*'))
    tiny = ['--device', 'cpu', '--epochs', '1', '--subset', '32', '--test-subset', '32', '--batch-size', '8']
    subprocess.run([sys.executable, 'baseline.py', '--data', str(data), *tiny, '--cache-dir', str(root / 'cache'),
                    '--out', str(tmp_path / 'teacher')], cwd=REPO, check=True, capture_output=True)
    shutil.copy(tmp_path / 'teacher' / 'model.pt', earlier / 'teacher' / 's0' / 'model.pt')
    env.update(RESULTS='earlier')  # relative to where gpu.sh is started
    proc = subprocess.run(['bash', str(REPO / 'tools/gpu.sh'), str(data), 'later', '--dry-run'], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '| run_all.sh gpu-short | 3 of 3 runs finished' in proc.stdout
    later = tmp_path / 'later' / 'gpu-short'
    for row in ('baseline', 'mixup'):  # carried over as they were, not trained again
        assert (later / row / 's0' / 'result.json').read_bytes() == (earlier / row / 's0' / 'result.json').read_bytes()
    assert json.loads((later / 'distill' / 's0' / 'result.json').read_text())['epochs'] == 1
    assert not list(later.rglob('*.pt'))
