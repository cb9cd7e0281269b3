"""Every script answers --help and runs one tiny epoch, alone, with mixup and composed; bad pairs stop."""
import json

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
