"""Every script answers --help and runs one tiny epoch, alone, with mixup and composed; bad pairs stop; a trick
of your own runs from outside the clone, alone and under --with PATH."""
import json
import os
import subprocess
import sys

import pytest

import adamw
import baseline
import common
import cosine
import cutmix
import distill
import ema
import evonorm
import fixres
import ghmc
import labelsmooth
import largebatch
import lsuv
import mixup
import nobiasdecay
import pretrained
import randaugment
import resnet_d
import warmup
import zerogamma
from conftest import REPO


SCRIPTS = [baseline, warmup, zerogamma, nobiasdecay, largebatch, resnet_d, cosine, labelsmooth, mixup, distill,
           evonorm, lsuv, ghmc]


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda m: m.__name__)
def test_every_script_answers_help(script, capsys):
    with pytest.raises(SystemExit) as e:
        common.main(script, ['--help'])
    assert e.value.code == 0
    assert (script.__doc__ or '').split('\n')[0] in capsys.readouterr().out


@pytest.mark.parametrize('script', [s for s in SCRIPTS if s is not distill], ids=lambda m: m.__name__)
def test_every_script_runs_one_tiny_epoch(script, run_args, tmp_path):
    result = common.main(script, run_args('--batch-size', '8'))
    assert 0 <= result['final_test_acc'] <= 100
    assert result['script'] == script.__name__
    assert (script is baseline) == (result['tricks'] == {})


@pytest.mark.parametrize('script', [cutmix, randaugment, ema, adamw])
@pytest.mark.parametrize('with_mixup', [False, True])
def test_each_runs_one_tiny_epoch_alone_and_with_mixup(script, with_mixup, run_args):
    result = common.main(script, run_args(*(['--with', 'mixup'] if with_mixup else [])))
    assert script.__name__ in result['tricks'] and ('mixup' in result['tricks']) == with_mixup


@pytest.mark.parametrize('with_mixup', [False, True])
def test_folder_scripts_run_one_tiny_epoch_alone_and_with_mixup(with_mixup, big_args, imagenet_weights):
    extra = ['--with', 'mixup'] if with_mixup else []
    common.main(pretrained, big_args('--weights', imagenet_weights, *extra, out='p'))
    common.main(fixres, big_args(*extra, out='f'))


# ---------------------------------------------------------------- compositions

COMPOSITIONS = [
    (mixup, ['labelsmooth', 'cosine']),           # the cosine+mixup+LS row
    (cosine, ['warmup']),
    (warmup, ['zerogamma', 'nobiasdecay', 'resnet_d', 'cosine', 'labelsmooth', 'mixup']),  # "all"
    (largebatch, ['zerogamma', 'nobiasdecay']),
]


@pytest.mark.parametrize('script, others', COMPOSITIONS, ids=['+'.join([s.__name__] + o) for s, o in COMPOSITIONS])
def test_compositions_run_and_record_every_trick(script, others, run_args, tmp_path):
    result = common.main(script, run_args('--with', *others, '--batch-size', '8'))
    assert list(result['tricks']) == [script.__name__] + others
    saved = json.loads((tmp_path / 'run' / 'result.json').read_text())
    assert saved['tricks'] == result['tricks']


@pytest.mark.parametrize('script, other, message', [
    (largebatch, 'warmup', 'largebatch.py and warmup.py both define --warmup-epochs'),
    (mixup, 'mixup', 'mixup is already on'),
])
def test_incompatible_pairs_stop_with_an_error(script, other, message, run_args):
    with pytest.raises(SystemExit, match=message):
        common.main(script, run_args('--with', other))


# ---------------------------------------------------------------- a trick of your own, outside the clone

CUTOUT = '''"""Cutout (DeVries & Taylor 2017): a square of each batch filled with the data's mean."""
import sys

import torch

import augment
import common


def add_args(parser):
    parser.add_argument('--size', type=common.at_least(1), default=8, help='side of the square in px')


def batch(images, targets, args):
    mean = torch.tensor(augment.MEAN_STD[args.dataset][0], device=images.device).view(3, 1, 1)
    y, x = torch.randint(0, images.shape[-1] - args.size + 1, (2,)).tolist()
    images = images.clone()
    images[:, :, y:y + args.size, x:x + args.size] = mean
    return images, targets


if __name__ == '__main__':
    common.main(sys.modules[__name__])
'''


@pytest.fixture
def mytricks(tmp_path):
    """A folder of the user's own tricks, outside the clone, holding cutout.py."""
    folder = tmp_path / 'mytricks'
    folder.mkdir()
    (folder / 'cutout.py').write_text(CUTOUT)
    yield folder
    for name, module in list(sys.modules.items()):  # loaded from here: another test's cutout.py is another file
        if str(getattr(module, '__file__', None) or '').startswith(str(folder)):
            del sys.modules[name]


def test_a_trick_file_outside_the_clone_works_under_with_its_path_named_by_its_stem_and_resumes_from_elsewhere(
        mytricks, run_args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(mytricks)
    argv = run_args()
    argv = argv[:argv.index('--out')]  # the default run folder, under runs/ here
    result = common.main(mixup, argv + ['--with', 'cutout.py', '--size', '4'])
    assert result['tricks'] == {'mixup': {'alpha': 0.2}, 'cutout': {'size': 4}}
    assert result['args']['with_'] == [str(mytricks / 'cutout.py')]  # means the same file from any folder
    [run] = (mytricks / 'runs').iterdir()
    assert run.name.startswith('mixup+cutout-') and 'size=4' in run.name and '/' not in run.name
    monkeypatch.chdir(tmp_path)  # another folder, another path to the same file: the same command, done
    again = common.main(mixup, argv + ['--with', 'mytricks/cutout.py', '--size', '4', '--resume', '--out', str(run)])
    assert again == json.loads((run / 'result.json').read_text())
    assert 'is finished already (--resume)' in capsys.readouterr().out


def test_a_trick_file_outside_the_clone_runs_alone_from_its_folder_with_the_repo_on_pythonpath(mytricks, run_args):
    alone = subprocess.run([sys.executable, 'cutout.py', '--with', 'mixup', *run_args(out='alone')], cwd=mytricks,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr
    result = json.loads((mytricks.parent / 'alone' / 'result.json').read_text())
    assert result['script'] == 'cutout' and result['tricks'] == {'cutout': {'size': 8}, 'mixup': {'alpha': 0.2}}


@pytest.mark.parametrize('source, word, message', [
    ('import common\ndef batch(images, targets, args)\n    return images, targets\n', 'bad.py',
     r"bad\.py, line 2: SyntaxError: expected ':': fix it there$"),
    ('import common\nimport timm_not_here\n', 'bad.py',
     r"bad\.py, line 2: ModuleNotFoundError: No module named 'timm_not_here': install the module or fix the import$"),
    ('import common\nSIZE = 1 / 0\n', 'bad.py', r"bad\.py, line 2: ZeroDivisionError: division by zero: fix it there$"),
    ('x = 1\n', 'bad.py', r"bad\.py defines no trick: none of common\.py's contract \(add_args, DEFAULTS, .*\)$"),
    ('', 'label-smooth', r"^error: --with label-smooth: label-smooth\.py is not a script here: no trick has that name "
                         r"\(did you mean labelsmooth\?\); choose from .*, or give the path of your trick's file"),
    ('', 'nothere/cutout.py', r"--with nothere/cutout\.py: there is no such file \(.*nothere/cutout\.py\)"),
    ('', '.', r"--with \.: that is a folder \(.*\); give the path of a trick's \.py file$"),
    ('x = 1\n', 'bad.txt', r"--with bad\.txt: bad\.txt is not a Python file \(\.py\)"),
    ('def batch(images, targets, args):\n    return images, targets\n', 'cosine.py',  # a trick of that name is here
     r"--with \./cosine\.py: cosine is the name of .*cosine\.py: rename .*mytricks/cosine\.py to run it beside"),
], ids=['syntax', 'import', 'raises', 'no trick', 'no such name', 'no such file', 'a folder', 'not .py', 'a name taken'])
def test_a_with_that_cannot_load_says_where_and_why_in_one_line(source, word, message, mytricks, monkeypatch):
    monkeypatch.chdir(mytricks)
    if source:
        (mytricks / word).write_text(source)
    with pytest.raises(SystemExit, match=message):
        common.parse(mixup, ['--with', f'./{word}' if word == 'cosine.py' else word], common.RECIPE)
    assert ', line ' not in message or 'bad' not in sys.modules  # a file that failed to load leaves no module behind


def test_a_batch_hook_that_returns_one_value_stops_naming_its_file_line_and_what_it_returned(mytricks, run_args):
    (mytricks / 'onlyimages.py').write_text('def batch(images, targets, args):\n    return images\n')
    with pytest.raises(SystemExit, match=r"onlyimages\.py, line 1: batch\(\) returned only a tensor of shape "
                                         r"\(8, 3, 32, 32\), not \(images, targets\): end it with `return images, "
                                         r"targets`, two tensors$"):
        common.main(baseline, run_args('--with', str(mytricks / 'onlyimages.py'), '--subset', '8'))
