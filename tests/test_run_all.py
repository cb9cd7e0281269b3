"""run_all.sh: the smoke and intel presets, rows.txt, its resumability."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import torchvision

from conftest import REPO, make_folder


def run_all(root, data, out, rows=None, extra='', jobs=2, published='', **popen):
    env = dict(os.environ, DATA=str(data), OUT=str(out), EXTRA=f"--device cpu --cache-dir {root / 'cache'} {extra}",
               JOBS=str(jobs), PYTHON=sys.executable, PUBLISHED=str(published))
    if rows:
        env['ROWS'] = rows
    return subprocess.Popen(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def test_a_note_written_over_two_lines_in_run_all_sh_stays_one_line_in_rows_txt(tmp_path):
    # PYTHON=false: every run fails at once; rows.txt is written before them
    # ROWS written over two lines: the record of the command in rows.txt stays one line too
    env = dict(os.environ, OUT=str(tmp_path / 'out'), PYTHON='false', SEEDS='1', ROWS='baseline\n   cosine')
    subprocess.run(['bash', 'run_all.sh', 'resnet18'], cwd=REPO, env=env, capture_output=True, timeout=60)
    lines = (tmp_path / 'out' / 'rows.txt').read_text().splitlines()
    notes = [line for line in lines if line.startswith('note ')]
    assert any('93.10 (baseline)' in n and '94.63 (all four): one run each' in n for n in notes), notes
    assert any(line.startswith('command ') and line.endswith(' bash run_all.sh resnet18') for line in lines)
    keys = {line.split()[0] for line in lines}
    assert keys <= {'preset', 'command', 'out', 'data', 'flags', 'jobs', 'seeds', 'note', 'row'}, keys


def test_run_all_sh_and_its_runner_edited_in_place_while_it_runs_go_on_as_they_were(tmp_path):
    """bash reads a script as it goes: an editor that rewrites run_all.sh or tools/run_table.sh in place
    during a run of hours would shift what bash reads next, unless bash has read it all before it starts."""
    script, runner = tmp_path / 'run_all.sh', tmp_path / 'tools' / 'run_table.sh'
    runner.parent.mkdir()
    script.write_text((REPO / 'run_all.sh').read_text())
    runner.write_text((REPO / 'tools' / 'run_table.sh').read_text())
    fake = tmp_path / 'python'  # each call adds a line at the top of both scripts, in place; then fails
    fake.write_text('#!/bin/sh\n' + ''.join(
        f'old=$(cat {f})\nprintf "# a line added by an edit\\n%s\\n" "$old" > {f}\n' for f in (script, runner)) +
        'exit 1\n')
    fake.chmod(0o755)
    env = dict(os.environ, OUT=str(tmp_path / 'out'), PYTHON=str(fake), ROWS='baseline')
    proc = subprocess.run(['bash', str(script), 'smoke'], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-2:] == [
        'run_all.sh smoke: failed: baseline s0 summarize',
        f"run_all.sh smoke: baseline s0: (it printed nothing; see {tmp_path / 'out' / 'baseline' / 's0.log'})"]
    for f in (script, runner):
        assert f.read_text().count('# a line added by an edit') >= 2  # the fake ran, and edited it


@pytest.mark.parametrize('settings, message', [
    ({'ROWS': 'baseline cosine baseline'}, 'ROWS names baseline twice: give each row once'),
    ({'EXTRA': '--lr 0.05 --seed 5'}, 'EXTRA sets --seed, which run_all.sh sets for each run: use SEEDS, OUT or DATA'),
    ({'EXTRA': '--out=x'}, 'EXTRA sets --out'), ({'EXTRA': '--data x'}, 'EXTRA sets --data'),
    ({'EXTRA': '--lr 0.05 --force'}, 'EXTRA holds --force, but run_all.sh gives every run --resume (a finished run '
                                     'is skipped, an unfinished one goes on): to train a run again, delete its folder')])
def test_a_repeated_row_or_extra_setting_what_run_all_sets_stops_before_any_run(tmp_path, settings, message):
    env = dict(os.environ, OUT=str(tmp_path / 'out'), PYTHON='false', **settings)
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"run_all.sh: {message}"), proc.stderr
    assert not (tmp_path / 'out').exists()


def fake_python(tmp_path, body):
    """A stand-in for python that run_all.sh calls: its probes (-c) fail, the checks of carried runs and of the
    data pass, a run does `body`."""
    fake = tmp_path / 'python'
    fake.write_text(f'#!/bin/sh\ncase "$1" in -c) exit 1 ;; tools/carry.py) cat > /dev/null; exit 0 ;; '
                    f'tools/check_data.py) exit 0 ;; esac\n{body}\n')
    fake.chmod(0o755)
    return str(fake)


@pytest.mark.parametrize('setting, message', [
    ('SEEDS=abc', 'SEEDS=abc: give the number of seeds'), ('SEEDS=1.5', 'SEEDS=1.5: give'), ('SEEDS=0', 'SEEDS=0: give'),
    ('SEEDS=-2', 'SEEDS=-2: give'), ('BUDGET=abc', 'BUDGET=abc: give seconds'), ('BUDGET=-100', 'BUDGET=-100: give'),
    ('JOBS=0', 'JOBS=0: give runs at a time'), ('JOBS=two', 'JOBS=two: give'), ('OUT=README.md', 'is a file')])
def test_a_setting_run_all_cannot_use_stops_in_one_line_before_any_run(tmp_path, setting, message):
    name, value = setting.split('=')
    env = dict(os.environ, **{'OUT': str(tmp_path / 'out'), 'PYTHON': 'false', 'ROWS': 'baseline', name: value})
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not list(tmp_path.glob('out/*/s0.log'))


def test_a_table_whose_runs_fail_ends_with_the_first_runs_cause(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / 'out'), ROWS='baseline cosine',
               PYTHON=fake_python(tmp_path, 'echo "error: no data in missing/: give --data"; exit 1'))
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == 'run_all.sh smoke: baseline s0: error: no data in missing/: give --data'


def test_the_cpu_preset_runs_the_papers_rows_and_a_rows_own_flags_come_last(tmp_path):
    calls = tmp_path / 'calls'
    env = dict(os.environ, OUT=str(tmp_path / 'out'), SEEDS='1', DATA=str(tmp_path),
               PYTHON=fake_python(tmp_path, f'echo "$*" >> {calls}; exit 1'))
    subprocess.run(['bash', 'run_all.sh', 'cpu'], cwd=REPO, env=env, capture_output=True, timeout=120)
    rows = [line.split()[1] for line in (tmp_path / 'out' / 'rows.txt').read_text().splitlines() if line.startswith('row ')]
    assert rows == ['baseline', 'warmup', 'zerogamma', 'nobiasdecay', 'resnet_d', 'cosine', 'labelsmooth', 'mixup',
                    'distill', 'largebatch', 'largebatch+warmup']
    large = [c for c in calls.read_text().splitlines() if c.startswith('largebatch.py')]
    assert large[0].startswith('largebatch.py --arch resnet20 --epochs 6 --batch-size 128 --batch-size 1024 '
                               '--warmup-epochs 0 --seed 0')  # argparse takes the last: the row's 1024
    assert any(c.startswith('baseline.py --arch resnet20 --epochs 6 --batch-size 128 --epochs 46 --seed 0')
               for c in calls.read_text().splitlines())  # the teacher


def test_sighup_stops_the_runs_as_ctrl_c_does(tmp_path):
    pids = tmp_path / 'pids'
    env = dict(os.environ, OUT=str(tmp_path / 'out'), ROWS='baseline',
               PYTHON=fake_python(tmp_path, f'echo $$ >> {pids}\nexec sleep 60'))
    # under nohup SIGHUP comes ignored, and bash cannot trap a signal ignored on entry: give run_all.sh
    # the default, as a terminal does
    proc = subprocess.Popen(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not (pids.exists() and pids.read_text().strip()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)  # the terminal closed
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and 'interrupted' in output, output
    run = int(pids.read_text())
    deadline = time.time() + 10
    while time.time() < deadline and os.path.exists(f'/proc/{run}') and 'Z' not in open(f'/proc/{run}/stat').read():
        time.sleep(0.05)
    assert not os.path.exists(f'/proc/{run}') or ' Z ' in open(f'/proc/{run}/stat').read()  # not orphaned


def test_each_start_of_a_run_appends_to_its_log_and_command_is_written_once_it_finishes(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / 'out'), ROWS='baseline',
               PYTHON=fake_python(tmp_path, 'echo "error: this try failed"; exit 1'))
    for _ in range(2):
        subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, timeout=60)
    log = (tmp_path / 'out' / 'baseline' / 's0.log').read_text().splitlines()
    assert [line.startswith('== ') for line in log] == [True, False, True, False] and 'baseline.py' in log[0]
    assert not (tmp_path / 'out' / 'baseline' / 's0.command').exists()  # no run finished


def started(log):
    """When run_all.sh started the run of this DIR.log: its first line, '== 2026-12-04 21:50:01 baseline.py ...'."""
    return int(time.mktime(time.strptime(' '.join(log.read_text().split()[1:3]), '%Y-%m-%d %H:%M:%S')))


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
    began = {p.parent.name: started(p) for p in out.glob('*/s0.log')}  # to the second
    ended = {p.parent.parent.name: int(p.stat().st_mtime) for p in out.glob('*/s0/result.json')}
    assert began['baseline'] <= ended['teacher'] and began['teacher'] <= ended['baseline']  # at once
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
    # published (as docs/<preset>/ holds them), they are the start of a fresh folder: nothing trains again
    published = root / 'published'
    out.rename(published)
    again = run_all(root, data, out, published=published)
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and output.count(': carried from') == output.count(': done (') == len(rows) + 1
    assert not list(out.glob('*/s0.log')), output  # no run started
    stamps = {p: p.stat().st_mtime_ns for p in out.glob('*/s0/result.json')}
    # other flags: a flag that changes only how it runs reuses the row, one that changes the result is refused
    same = run_all(root, data, out, 'baseline', extra='--threads 2')
    output, _ = same.communicate(timeout=300)
    assert same.returncode == 0 and '== baseline s0: done (' in output, output
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


# ---------------------------------------------------------------- DDP


# ---------------------------------------------------------------- carried runs and published tables

@pytest.fixture(scope='module')
def published_table(smoke_data):
    """A finished smoke table of baseline and distill, 2 seeds each (and the teacher), as docs/<preset>/
    holds one: the start of the carrying tests, each of which copies it first."""
    data, root = smoke_data
    table = root / 'published-table'
    env = dict(os.environ, DATA=str(data), OUT=str(table), EXTRA=f"--device cpu --cache-dir {root / 'cache'}",
               JOBS='1', PYTHON=sys.executable, ROWS='baseline distill', SEEDS='2')
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return data, root, table


def table_run(data, root, out, published, check=False, **settings):
    env = dict(os.environ, DATA=str(data), OUT=str(out), PUBLISHED=str(published), JOBS='1', PYTHON=sys.executable,
               EXTRA=f"--device cpu --cache-dir {root / 'cache'}", ROWS='baseline distill', SEEDS='2',
               CHECK='1' if check else '')
    env.update(settings)
    return subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=300)


def edit_result(run, args=(), **changes):
    """Edit a run's result.json by hand: `changes` at its top, `args` in its flags."""
    result = json.loads((run / 'result.json').read_text())
    result.update(changes)
    result['args'].update(args)
    (run / 'result.json').write_text(json.dumps(result))


def test_a_carried_run_is_checked_as_the_script_checks_it_and_a_failing_one_is_named_and_not_carried(
        published_table, tmp_path):
    data, root, table = published_table
    published = tmp_path / 'published'
    shutil.copytree(table, published)
    edit_result(published / 'baseline' / 's0', final_test_acc=99.99)  # its log.jsonl says otherwise
    edit_result(published / 'baseline' / 's1', args={'epochs': 60, 'lr': 0.4})  # another command
    shutil.rmtree(published / 'distill' / 's1')
    shutil.copytree(published / 'distill' / 's0', published / 'distill' / 's1')  # a copy: seed 0 twice
    edit_result(published / 'distill' / 's0', args={'weight_decay': 0.0001})  # made by another recipe
    proc = table_run(data, root, tmp_path / 'out', published, check=True)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and not (tmp_path / 'out').exists(), proc.stdout + proc.stderr  # nothing written
    said = {line.split(':')[0]: line for line in lines if ': not carried' in line}
    assert 'says 99.99%, but the last epoch of its log.jsonl says' in said['== baseline s0']
    assert 'another command (epochs: 60 there, 1 here, lr: 0.4 there, 0.1 here)' in said['== baseline s1']
    assert 'another command (weight_decay: 0.0001 there, 0.0005 here)' in said['== distill s0']
    assert 'another command (seed: 0 there, 1 here)' in said['== distill s1']
    assert f'== teacher: carried from {published}' in lines
    assert '== baseline s0: trained (' in proc.stdout and '== distill s1: trained (' in proc.stdout
    carried, trained = sum(': carried from' in line for line in lines), sum(': trained (' in line for line in lines)
    assert lines[-1] == f"check: {carried + trained} runs: 0 done, {carried} carried, 0 resumed, {trained} trained; " \
                        "nothing written" and carried > 0 and trained == 4, proc.stdout
    # in OUT, the same runs stop the table before anything is written, each named in one line
    out = tmp_path / 'out'
    shutil.copytree(published, out)
    before = sorted(p.relative_to(out) for p in out.rglob('*'))
    proc = table_run(data, root, out, '')
    errors = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(errors) == 4, proc.stdout + proc.stderr
    assert errors[0].startswith(f"run_all.sh smoke: baseline s0: {out / 'baseline' / 's0'} cannot be part of this "
                                "table: ") and errors[0].endswith(f"delete {out / 'baseline' / 's0'} to train it "
                                                                  "again, or give another OUT")
    assert sorted(p.relative_to(out) for p in out.rglob('*')) == before


def test_only_the_rows_and_seeds_asked_for_are_carried_even_into_an_out_with_a_space(published_table, tmp_path):
    data, root, table = published_table
    out = tmp_path / 'a table'
    proc = table_run(data, root, f'{out}/', table, ROWS='baseline', SEEDS='1')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(str(p.relative_to(out)) for p in out.glob('*/s*/result.json')) == ['baseline/s0/result.json']
    assert 'seeds 1' in (out / 'rows.txt').read_text().splitlines()
    # the distill rows name their teacher by the folder of this table, and are the same runs: by its digest
    proc = table_run(data, root, f'{out}/', table)
    assert proc.returncode == 0 and not list(out.glob('*/s*.log')), proc.stdout + proc.stderr  # nothing trained
    assert proc.stdout.count(': carried from') == 4 and proc.stdout.count(': done (') == 5


def test_a_distill_run_is_carried_by_its_teachers_digest_or_for_an_older_run_by_its_tables_path(
        published_table, tmp_path):
    data, root, table = published_table
    published = tmp_path / 'published'
    shutil.copytree(table, published)
    student = json.loads((published / 'distill' / 's0' / 'result.json').read_text())
    assert set(student['files']) == {'teacher'}
    torch.save({'not': 'the teacher'}, published / 'teacher' / 's0' / 'model.pt')  # another file, the same path
    edit_result(published / 'distill' / 's1', files={})  # made before digests: the table's own teacher by path
    proc = table_run(data, root, tmp_path / 'out', published, check=True)
    assert 'is not the file the run was made with (sha256' in proc.stdout.split('== distill s0: not carried')[1]
    assert '== distill s1: carried from' in proc.stdout, proc.stdout


def test_a_table_that_cannot_finish_exits_3_saying_which_runs_wait_and_why(published_table, tmp_path):
    data, root, table = published_table
    published = tmp_path / 'published'
    shutil.copytree(table, published)
    (published / 'teacher' / 's0' / 'model.pt').unlink()  # published without the teacher's weights
    proc = table_run(data, root, tmp_path / 'out', published, SEEDS='3', ROWS='distill')
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 3 and last.startswith("run_all.sh smoke: not finished: distill s2 waits for the "
                                                    "teacher's model.pt"), proc.stdout + proc.stderr
    proc = table_run(data, root, tmp_path / 'out2', published, SEEDS='3', ROWS='baseline', BUDGET='1')
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 3 and last.startswith('run_all.sh smoke: not finished: baseline s2: not started or '
                                                    'paused at the time budget'), proc.stdout + proc.stderr
    assert '== baseline s2: not started: ' in proc.stdout and '== baseline s2 ->' not in proc.stdout, proc.stdout


def test_carrying_keeps_an_unfinished_run_and_copies_a_run_folder_whole(published_table, tmp_path):
    data, root, table = published_table
    published = tmp_path / 'published'
    shutil.copytree(table, published)
    (published / 'baseline' / 's1' / 'tensorboard').mkdir()
    (published / 'baseline' / 's1' / 'tensorboard' / 'events').write_text('x')
    out = tmp_path / 'out'
    (out / 'baseline' / 's0').mkdir(parents=True)
    (out / 'baseline' / 's0' / 'last.pt').write_text('an unfinished run')
    proc = table_run(data, root, out, published, check=True)
    assert f"== baseline s0: not carried from {published / 'baseline' / 's0'}: {out / 'baseline' / 's0'} holds an " \
           "unfinished run (last.pt), which resumes" in proc.stdout.splitlines(), proc.stdout
    proc = table_run(data, root, out, published, ROWS='baseline', BUDGET='1')  # carries, then trains nothing
    assert (out / 'baseline' / 's1' / 'tensorboard' / 'events').read_text() == 'x'
    assert (out / 'baseline' / 's1.command').exists() and (out / 'baseline' / 's0' / 'last.pt').read_text() == \
        'an unfinished run' and not (out / 'baseline' / 's0' / 'result.json').exists(), proc.stdout + proc.stderr


@pytest.mark.parametrize('where, message', [
    ('OUT=PUB', 'is inside {pub}, where published tables live: give another OUT'),
    ('OUT=PUB/baseline', 'is inside {pub}, where published tables live'),
    ('OUT=docs/x', 'is inside docs, where published tables live'),
    ('PUBLISHED=PUB-typo', 'PUBLISHED={pub}-typo is not a folder'),
    ('OUT=CPU', 'holds the cpu table (its rows.txt): give another OUT for smoke')])
def test_a_table_never_writes_into_a_published_folder_nor_over_another_presets_table(tmp_path, where, message):
    published = tmp_path / 'pub'
    (published / 'baseline' / 's0').mkdir(parents=True)
    (tmp_path / 'cpu').mkdir()
    (tmp_path / 'cpu' / 'rows.txt').write_text('preset cpu\n')
    name, value = where.split('=')
    value = value.replace('PUB', str(published)).replace('CPU', str(tmp_path / 'cpu'))
    env = dict(os.environ, OUT=str(tmp_path / 'out'), PUBLISHED=str(published), PYTHON='false', ROWS='baseline')
    env[name] = value
    before = sorted(tmp_path.rglob('*'))
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message.format(pub=published) in lines[0], proc.stderr
    assert sorted(tmp_path.rglob('*')) == before


# ---------------------------------------------------------------- the data, checked once before any run

def test_the_data_check_stops_offline_without_cifar_and_passes_where_its_files_or_a_folder_tree_are(
        tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    import check_data

    def offline(url, timeout):
        raise urllib.error.URLError(OSError(-2, 'Name or service not known'))
    monkeypatch.setattr(urllib.request, 'urlopen', offline)
    with pytest.raises(SystemExit, match=r'^error: DATA=.*nodata holds no cifar10 \(cifar-10-batches-py/ or '
                                         r'cifar-10-python.tar.gz\), and it cannot be downloaded \(\[Errno -2\] Name or '
                                         r'service not known\): offline, put cifar-10-python.tar.gz from https://\S+ '
                                         r'into /\S+/nodata, or give DATA a folder that holds it, or an ImageFolder tree$'):
        check_data.check(['baseline.py', '--data', str(tmp_path / 'nodata'), '--seed', '0'])
    with pytest.raises(SystemExit, match=r'^error: DATA=.*cifar100data holds no cifar100 \(cifar-100-python/'):
        check_data.check(['baseline.py', '--data', str(tmp_path / 'cifar100data'), '--dataset', 'cifar100'])
    (tmp_path / 'tgz').mkdir()
    (tmp_path / 'tgz' / 'cifar-10-python.tar.gz').write_bytes(b'')  # there: each run checks it when it loads
    check_data.check(['baseline.py', '--data', str(tmp_path / 'tgz')])
    check_data.check(['baseline.py', '--data', str(make_folder(tmp_path / 'tree'))])  # a folder tree: no download
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(SystemExit, match=r'^error: DATA=.*afile: --data .*afile is a file: give a folder'):
        check_data.check(['baseline.py', '--data', str(tmp_path / 'afile')])


def test_run_all_offline_without_cifar_stops_once_in_one_line_before_any_run(tmp_path):
    """Each of the smoke table's 17 runs failed alike after trying the download (81 s). Offline here: the
    download goes through a proxy that refuses every connection."""
    env = dict(os.environ, DATA=str(tmp_path / 'nodata'), OUT=str(tmp_path / 'out'), PYTHON=sys.executable,
               https_proxy='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9', no_proxy='', NO_PROXY='')
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"run_all.sh: DATA={tmp_path / 'nodata'} holds no cifar10 (")
    assert 'cannot be downloaded (' in proc.stderr and not (tmp_path / 'out').exists() and not proc.stdout


def test_the_last_line_names_the_table_by_its_absolute_path_as_a_relative_out_is_read_from_the_repo(tmp_path):
    out = os.path.relpath(tmp_path / 'out', REPO)  # run_all.sh reads OUT from its own folder, not the caller's
    env = dict(os.environ, OUT=out, ROWS='baseline', DATA=str(tmp_path), PYTHON=fake_python(tmp_path, 'exit 0'))
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].endswith(f"; table in {os.path.realpath(tmp_path / 'out')}/ablation-smoke.md")
