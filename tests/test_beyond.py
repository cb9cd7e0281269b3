"""The later tricks (CutMix, RandAugment, EMA, AdamW, FixRes, pretrained) against their definitions."""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision

import adamw
import baseline
import common
import cutmix
import ema
import evaluate
import fixres
import mixup
import pretrained
import randaugment
from conftest import interrupted_in_epoch_2, make_folder


@pytest.fixture
def big_folder(tmp_path):
    """Folder data above 64 px, so random-resized-crop, FixRes and ImageNet-style nets apply."""
    return make_folder(tmp_path / 'big', per_class=6, test_per_class=3, sizes=((90, 80), (72, 100), (96, 96)))


@pytest.fixture
def big_args(tmp_path, big_folder):
    def argv(*extra, out='run'):
        return ['--data', str(big_folder), '--epochs', '1', '--batch-size', '6', '--device', 'cpu',
                '--image-size', '72', '--arch', 'resnet18', '--cache-dir', str(tmp_path / 'cache'),
                '--out', str(tmp_path / out), *map(str, extra)]
    return argv


@pytest.fixture
def imagenet_weights(tmp_path):
    """A torchvision-format resnet18 state dict in a file: the offline --weights PATH."""
    path = tmp_path / 'resnet18-imagenet.pth'
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


# ---------------------------------------------------------------- CutMix

@pytest.mark.parametrize('lam, cy, cx', [(0.5, 16, 16), (0.3, 0, 0), (0.9, 31, 5), (0.01, 20, 31)])
def test_cutmix_box_lies_inside_and_lambda_is_the_kept_area(lam, cy, cx):
    top, bottom, left, right = cutmix.cutmix_box(32, 32, lam, cy, cx)
    assert 0 <= top <= bottom <= 32 and 0 <= left <= right <= 32
    x = torch.rand(4, 3, 32, 32)
    y = F.one_hot(torch.tensor([0, 1, 2, 3]), 5).float()
    mixed, targets, true_lam = cutmix.cutmix(x, y, (top, bottom, left, right))
    assert true_lam == pytest.approx(1 - (bottom - top) * (right - left) / (32 * 32))
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    torch.testing.assert_close(targets[0, 0], torch.tensor(true_lam))
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[top:bottom, left:right] = True
    assert torch.equal(mixed[:, :, inside], x.flip(0)[:, :, inside])  # the box comes from the partner
    assert torch.equal(mixed[:, :, ~inside], x[:, :, ~inside])  # the rest is the image's own


def test_cutmix_prob_zero_is_exactly_no_cutmix(run_args):
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 3, (8,))
    args = SimpleNamespace(cutmix_prob=0.0, cutmix_alpha=1.0, num_classes=3)
    out_x, out_y = cutmix.batch(x, y, args)
    assert out_x is x and out_y is y
    plain = common.main(baseline, run_args(out='plain'))
    off = common.main(cutmix, run_args('--cutmix-prob', '0', out='off'))
    assert off['final_test_acc'] == plain['final_test_acc']


def test_cutmix_composes_with_mixup(run_args):
    result = common.main(cutmix, run_args('--cutmix-prob', '1', '--with', 'mixup'))
    assert set(result['tricks']) == {'cutmix', 'mixup'}


# ---------------------------------------------------------------- RandAugment

def test_randaugment_keeps_dtype_shape_and_range_and_n0_is_identity():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = randaugment.rand_augment(x, 2, 9)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert (out != x).flatten(1).any(1).float().mean() > 0.5  # most images changed
    assert torch.equal(randaugment.rand_augment(x, 0, 9), x)
    floats = torch.rand(16, 3, 32, 32)
    aug, y = randaugment.batch(floats, torch.arange(16), SimpleNamespace(ra_n=2, ra_m=9))
    assert aug.dtype == torch.float32 and aug.shape == floats.shape and 0 <= aug.min() and aug.max() <= 1
    same, _ = randaugment.batch(floats, y, SimpleNamespace(ra_n=0, ra_m=9))
    assert (same - floats).abs().max() <= 0.5 / 255  # only the uint8 rounding


def test_randaugment_clamps_what_colour_augmentation_pushed_outside_the_range():
    images = torch.full((4, 3, 8, 8), 0.5)
    images[0], images[1] = -0.01, 1.01  # as lighting can leave them
    out, _ = randaugment.batch(images, None, SimpleNamespace(ra_n=0, ra_m=9))
    assert out[0].eq(0).all() and out[1].eq(1).all()  # not 253/255 and 2/255: no wrap-around


def test_randaugment_applies_each_op_per_image():
    torch.manual_seed(1)
    x = torch.randint(0, 256, (200, 3, 16, 16), dtype=torch.uint8)
    out = randaugment.rand_augment(x, 1, 30)
    changed = (out != x).flatten(1).any(1)
    assert 0.5 < changed.float().mean() < 1  # identity and a few no-op draws leave some images alone


# ---------------------------------------------------------------- EMA

def test_ema_update_is_the_moving_average_of_weights_and_buffers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    average = ema.EMA(net, decay=0.9, warmup=False)
    old = {k: v.clone() for k, v in average.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net(torch.randn(2, 3, 8, 8))  # changes the BN running statistics
    new = net.state_dict()
    average.update()
    for k, v in average.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.9 * old[k] + 0.1 * new[k])
        else:
            assert torch.equal(v, new[k])  # num_batches_tracked: copied
    assert average.updates == 1


def test_ema_decay_warmup_and_default_scale_with_the_run():
    net = torch.nn.Linear(2, 2)
    average = ema.EMA(net, decay=0.999, warmup=True)
    before = average.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update()  # t = 0: d = min(0.999, 1/10)
    torch.testing.assert_close(average.module.weight, 0.1 * before + 0.9 * net.weight)
    assert 0.99 < ema.default_decay(11_700) < 0.999  # half-life of 234 steps
    assert ema.default_decay(10_000_000) == pytest.approx(0.9998)


def test_ema_run_logs_both_and_reports_the_average_when_asked(run_args, tmp_path, folder):
    result = common.main(ema, run_args('--epochs', '2'))
    row = [json.loads(line) for line in (tmp_path / 'run' / 'log.jsonl').read_text().splitlines()][-1]
    assert {'test_acc', 'ema_test_acc', 'ema_test_loss'} <= set(row)
    assert result['final_test_acc'] == row['test_acc']
    # the average in model.pt gives ema_test_acc again through evaluate.py --ema
    metrics = evaluate.main([str(tmp_path / 'run' / 'model.pt'), '--ema', '--data', str(folder), '--device', 'cpu',
                             '--cache-dir', str(tmp_path / 'cache')])
    assert metrics['test_acc'] == pytest.approx(row['ema_test_acc'])
    asked = common.main(ema, run_args('--epochs', '2', '--ema-eval', out='asked'))
    row2 = [json.loads(line) for line in (tmp_path / 'asked' / 'log.jsonl').read_text().splitlines()][-1]
    assert row2['test_acc'] == pytest.approx(row['ema_test_acc']) and 'raw_test_acc' in row2
    assert asked['final_test_acc'] == row2['test_acc']


def test_ema_resumes_exactly(run_args, tmp_path):
    flags = ('--epochs', '3', '--subset', '16')
    straight = common.main(ema, run_args(*flags, out='straight'))
    interrupted_in_epoch_2(ema, run_args(*flags, out='killed'))
    common.main(ema, run_args(*flags, '--resume', out='killed'))
    a = torch.load(tmp_path / 'straight' / 'model.pt', weights_only=True)['extra']
    b = torch.load(tmp_path / 'killed' / 'model.pt', weights_only=True)['extra']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- AdamW

def test_adamw_decays_the_weights_not_the_gradient():
    w = torch.nn.Parameter(torch.ones(3))
    opt = adamw.optimizer([{'params': [w], 'weight_decay': 0.05}], SimpleNamespace(adam=False, lr=1e-3, weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW)
    w.grad = torch.zeros(3)  # no loss gradient: only the decay acts
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 1 - 1e-3 * 0.05))  # w - lr * lambda * w
    v = torch.nn.Parameter(torch.ones(3))
    plain = adamw.optimizer([{'params': [v], 'weight_decay': 0.05}], SimpleNamespace(adam=True, lr=1e-3, weight_decay=0.05))
    assert type(plain) is torch.optim.Adam
    v.grad = torch.zeros(3)
    plain.step()  # L2 in the gradient, then Adam's normalisation: a full lr-sized step
    torch.testing.assert_close(v.detach(), torch.full((3,), 1 - 1e-3), atol=1e-6, rtol=0)


def test_adamw_keeps_the_groups_decay_so_nobiasdecay_composes(run_args):
    result = common.main(adamw, run_args('--with', 'nobiasdecay'))
    assert result['args']['lr'] == 1e-3 and result['args']['weight_decay'] == 0.05
    assert result['tricks']['adamw'] == {'adam': False, 'lr': 1e-3, 'weight_decay': 0.05}
    run = common.prepare(adamw, run_args('--with', 'nobiasdecay', out='again'))
    assert type(run.optimizer) is torch.optim.AdamW and {g['weight_decay'] for g in run.optimizer.param_groups} == {
        0.0, 0.05}


# ---------------------------------------------------------------- FixRes

@pytest.fixture
def evaluated(monkeypatch):
    """(split name, net in training mode, image height x width) of every forward while evaluating."""
    seen, real = [], common.evaluate

    def spy(run, split, index, name, net=None):
        handle = run.net.register_forward_pre_hook(lambda m, inputs: seen.append(
            (name, m.training, tuple(inputs[0].shape[-2:]))))
        try:
            return real(run, split, index, name, net)
        finally:
            handle.remove()
    monkeypatch.setattr(common, 'evaluate', spy)
    return seen


def test_fixres_tests_at_the_higher_resolution(big_args, evaluated):
    common.main(fixres, big_args('--test-scale', '1.25', '--with', 'mixup'))
    assert evaluated and all(not training and size == (90, 90) for _, training, size in evaluated)  # 1.25 x 72


def test_fixres_selects_on_val_images_seen_as_the_test_images_are(big_args, tmp_path, evaluated):
    """The val images are held at the training load size (82 px for 72): the test view resizes them to
    the test load size before its centre crop, so val_acc is measured at 90 px too, not on slivers."""
    common.main(fixres, big_args('--test-scale', '1.25', '--val-split', '0.25'))
    assert {name for name, _, _ in evaluated} == {'val', 'test'}
    assert all(size == (90, 90) for _, _, size in evaluated)
    assert 0 <= json.loads((tmp_path / 'run' / 'log.jsonl').read_text())['val_acc'] <= 100


def test_fixres_finetune_trains_only_the_classifier_and_bn(big_args, tmp_path):
    common.main(baseline, big_args(out='trained'))
    weights = tmp_path / 'trained' / 'model.pt'
    run = common.prepare(fixres, big_args('--finetune', '--weights', weights, out='ft'))
    trained = {n for n, p in run.net.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith('fc.') or '.bn' in n or n.startswith('bn1') or 'downsample.1' in n
                           for n in trained)
    assert 'conv1.weight' not in trained and 'fc.weight' in trained
    with pytest.raises(SystemExit, match='--finetune adapts a trained net'):
        common.main(fixres, big_args('--finetune', out='ft2'))


def test_fixres_refuses_cifar_sized_images(run_args):
    with pytest.raises(SystemExit, match='tested whole'):
        common.main(fixres, run_args())


# ---------------------------------------------------------------- pretrained

def test_pretrained_loads_a_torchvision_file_offline(big_args, imagenet_weights, capsys):
    result = common.main(pretrained, big_args('--weights', imagenet_weights))
    assert 'new 3-class classifier' in capsys.readouterr().out
    saved = torch.load(__import__('pathlib').Path(result['args']['out']) / 'model.pt', weights_only=True)
    assert saved['state_dict']['fc.weight'].shape == (3, 512)


def test_pretrained_refuses_mismatched_weights_and_zero_gamma(big_args, tmp_path, imagenet_weights):
    wrong = tmp_path / 'r34.pth'
    torch.save(torchvision.models.resnet34().state_dict(), wrong)
    with pytest.raises(SystemExit, match='does not fit resnet18'):
        common.main(pretrained, big_args('--weights', wrong))
    with pytest.raises(SystemExit, match='zero gamma initialises a net from scratch'):
        common.main(pretrained, big_args('--weights', imagenet_weights, '--with', 'zerogamma'))
    with pytest.raises(SystemExit, match="both change the model's variant"):
        common.main(pretrained, big_args('--weights', imagenet_weights, '--arch', 'resnet50', '--with', 'resnet_d'))
    with pytest.raises(SystemExit, match='ImageNet weights for'):
        common.main(pretrained, big_args('--weights', imagenet_weights, '--arch', 'resnet20'))


# ---------------------------------------------------------------- each script, alone and with mixup

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


def test_distillation_mixup_and_cutmix_compose(run_args, tmp_path):
    common.main(baseline, run_args(out='teacher'))
    result = common.main(cutmix, run_args('--cutmix-prob', '1', '--with', 'mixup', 'distill', '--teacher',
                                          tmp_path / 'teacher' / 'model.pt', out='student'))
    assert set(result['tricks']) == {'cutmix', 'mixup', 'distill'}
