"""A run is tied to its data: the fingerprint in result.json, last.pt, model.pt, checked on --resume and run_all.sh."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torchvision

import baseline
import common
from conftest import REPO, interrupted_in_epoch_2, make_folder


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
    assert other.returncode == 1 and 'run_all.sh smoke: baseline s0: ' in other.stderr, other.stdout + other.stderr
    assert 'cannot be part of this table: it was trained on other files' in other.stderr and '->' not in other.stdout
    assert result.stat().st_mtime_ns == stamp
