"""Each trick against its definition, and every script end to end, alone and composed."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import baseline
import common
import cosine
import distill
import evonorm
import ghmc
import labelsmooth
import largebatch
import lsuv
import mixup
import models
import nobiasdecay
import resnet_d
import warmup
import zerogamma

SCRIPTS = [baseline, warmup, zerogamma, nobiasdecay, largebatch, resnet_d, cosine, labelsmooth, mixup, distill,
           evonorm, lsuv, ghmc]


def schedule(tricks, epochs=10, steps_per_epoch=20, **flags):
    """The lr at every step, as the loop computes it."""
    args = SimpleNamespace(**dict(dict(lr=0.1, epochs=epochs, milestones=[0.5, 0.75], warmup_epochs=None,
                                       batch_size=128), **flags))
    total = epochs * steps_per_epoch
    run = SimpleNamespace(args=args, total_steps=total, hooks=lambda name: common.hooks(tricks, name),
                          warmup_steps=common.replaced(tricks, 'warmup_steps', common.no_warmup)(total, args),
                          schedule=common.replaced(tricks, 'schedule', common.step_decay))
    return [common.learning_rate(run, t) for t in range(run.total_steps)]


# ---------------------------------------------------------------- schedules

def test_baseline_steps_down_at_half_and_three_quarters():
    lr = schedule([])
    assert lr[99] == 0.1 and lr[100] == pytest.approx(0.01) and lr[150] == pytest.approx(0.001)


def test_warmup_starts_above_zero_grows_linearly_and_reaches_the_base_lr():
    lr = schedule([warmup], epochs=100, warmup_epochs=5)  # 100 warmup steps
    assert lr[0] == pytest.approx(0.1 / 100) and lr[0] > 0
    assert all(b - a == pytest.approx(0.1 / 100) for a, b in zip(lr[:99], lr[1:100]))
    assert lr[99] == pytest.approx(0.1) and lr[100:1000] == [pytest.approx(0.1)] * 900


def test_warmup_default_is_five_epochs_but_at_most_a_tenth_of_the_run():
    args = SimpleNamespace(warmup_epochs=None, epochs=100)
    assert warmup.warmup_steps(1000, args) == 50  # 5 epochs of 10 steps
    args.epochs = 20
    assert warmup.warmup_steps(200, args) == 20  # 2 epochs: 10% of 20


def test_cosine_matches_its_formula_from_the_peak_to_zero():
    lr = schedule([cosine])
    total = len(lr)
    for t in (0, 1, 57, 100, total - 1):
        assert lr[t] == pytest.approx(0.5 * (1 + math.cos(math.pi * t / (total - 1))) * 0.1)
    assert lr[0] == 0.1 and lr[-1] == pytest.approx(0, abs=1e-18)
    assert all(b < a for a, b in zip(lr, lr[1:]))  # no step decay left


def test_warmup_then_cosine_reaches_the_peak_exactly_and_ends_at_zero():
    lr = schedule([warmup, cosine], epochs=100, warmup_epochs=5)  # 100 warmup steps of 2000
    for t in range(100):
        assert lr[t] == pytest.approx(0.1 * (t + 1) / 100)
    assert lr[99] == 0.1 and lr[100] == 0.1  # the warmup ends at the peak, where the cosine starts
    for t in (100, 101, 500, 1999):  # then the cosine over the remaining 1900 steps
        assert lr[t] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * (t - 100) / 1899)))
    assert lr[-1] == pytest.approx(0, abs=1e-18)
    assert lr == pytest.approx(schedule([cosine, warmup], epochs=100, warmup_epochs=5))  # order does not matter


def test_largebatch_scales_the_lr_linearly_after_its_warmup():
    lr = schedule([largebatch], epochs=100, batch_size=1024, warmup_epochs=5)
    assert lr[99] == pytest.approx(0.8) and lr[0] == pytest.approx(0.008)


# ---------------------------------------------------------------- model tweaks

def blocks(model):
    return [m for m in model.modules() if type(m).__name__ in ('BasicBlock', 'Bottleneck')]


@pytest.mark.parametrize('arch', ['resnet20', 'resnet18', 'resnet50'])
def test_zero_gamma_makes_every_block_return_relu_of_its_shortcut(arch):
    args = SimpleNamespace(weights=None)
    model = zerogamma.model(models.build(arch, 10), args)
    x = torch.randn(4, 3, 32, 32)
    checked = 0
    for block in blocks(model):
        x_in = torch.randn(4, block.conv1.in_channels, 8, 8)
        shortcut = getattr(block, 'shortcut', None) or block.downsample or nn.Identity()
        torch.testing.assert_close(block(x_in), F.relu(shortcut(x_in)), rtol=0, atol=0)
        checked += 1
    assert checked == len(blocks(model)) > 0
    model(x)  # and the net still runs


def test_zero_gamma_draws_the_same_weights_otherwise_and_refuses_pretrained_weights():
    args = SimpleNamespace(arch='resnet20', seed=3, weights=None, init='default', image_size=32)
    plain = common.build_net(args, [], 10, print)
    zeroed = common.build_net(args, [zerogamma], 10, print)
    differ = [k for k, v in plain.state_dict().items() if not torch.equal(v, zeroed.state_dict()[k])]
    assert differ and all(k.endswith('bn2.weight') for k in differ)
    with pytest.raises(SystemExit, match='from scratch'):
        zerogamma.model(plain, SimpleNamespace(weights='IMAGENET1K_V1'))


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet50_variants_counts_and_shapes():
    counts = {v: count(models.build('resnet50', 1000, variant=v)) for v in ('', 'B', 'C', 'D')}
    assert counts == {'': 25_557_032, 'B': 25_557_032, 'C': 25_576_264, 'D': 25_576_264}
    x = torch.randn(2, 3, 64, 64)
    for v in ('B', 'C', 'D'):
        net = resnet_d.model(models.build('resnet50', 10), SimpleNamespace(variant=v))
        assert net(x).shape == (2, 10)


def test_resnet_d_is_cumulative_on_imagenet_nets():
    d = models.build('resnet50', 10, variant='D')
    assert isinstance(d.conv1, nn.Sequential) and len(d.conv1) == 7  # C's stem
    assert d.layer2[0].conv2.stride == (2, 2) and d.layer2[0].conv1.stride == (1, 1)  # B's stride
    pool = d.layer2[0].downsample[0]  # D's shortcut
    assert isinstance(pool, nn.AvgPool2d) and pool.ceil_mode and not pool.count_include_pad
    assert d.layer2[0].downsample[1].stride == (1, 1)
    original = models.build('resnet50', 10)
    assert original.layer2[0].conv1.stride == (2, 2) and original.layer2[0].conv2.stride == (1, 1)


def test_cifar_variants_are_alone_and_counted():
    assert count(models.build('resnet20', 10, variant='D')) == 272_474
    assert count(models.build('resnet20', 10, variant='C')) == 277_146
    assert count(models.build('resnet56', 10, variant='C')) == 860_442
    d = models.build('resnet20', 10, variant='D')
    assert isinstance(d.layer2[0].shortcut[0], nn.AvgPool2d) and not isinstance(d.conv1, nn.Sequential)
    c = models.build('resnet20', 10, variant='C')
    assert isinstance(c.conv1, nn.Sequential) and not isinstance(c.layer2[0].shortcut[0], nn.AvgPool2d)
    for v in ('C', 'D'):
        assert models.build('resnet32', 10, variant=v)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_variant_that_does_not_apply_stops(run_args):
    with pytest.raises(SystemExit, match="'B' does not exist for CIFAR"):
        common.main(resnet_d, run_args('--variant', 'B'))
    with pytest.raises(SystemExit, match='basic blocks'):
        common.main(resnet_d, run_args('--variant', 'B', '--arch', 'resnet18'))


# ---------------------------------------------------------------- parameter groups

def test_no_bias_decay_splits_weights_from_biases_and_bn_without_loss_or_duplicates():
    model = models.build('resnet20', 10)
    groups = [{'params': list(model.parameters()), 'weight_decay': 5e-4}]
    split = nobiasdecay.param_groups(groups, model, SimpleNamespace())
    ids = [id(p) for g in split for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # nothing lost or counted twice
    by_name = {id(p): n for n, p in model.named_parameters()}
    decayed = {by_name[id(p)] for g in split if g['weight_decay'] > 0 for p in g['params']}
    free = {by_name[id(p)] for g in split if g['weight_decay'] == 0 for p in g['params']}
    assert all(n.endswith('weight') and 'bn' not in n and 'shortcut.1' not in n for n in decayed)
    assert 'fc.bias' in free and 'bn1.weight' in free and 'bn1.bias' in free
    assert 'fc.weight' in decayed and 'conv1.weight' in decayed
    torch.optim.SGD(split, lr=0.1)  # a valid set of groups


# ---------------------------------------------------------------- losses

def soft_cross_entropy(logits, q):
    return -(q * F.log_softmax(logits, 1)).sum(1).mean()


def test_label_smoothing_equals_torch_label_smoothing():
    logits, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    q = labelsmooth.smooth(F.one_hot(y, 10).float(), 0.1)
    torch.testing.assert_close(q.sum(1), torch.ones(32))
    assert q[0, y[0]] == pytest.approx(1 - 0.1 + 0.01) and q.min() == pytest.approx(0.01)
    for loss in (soft_cross_entropy(logits, q), F.cross_entropy(logits, q)):
        torch.testing.assert_close(loss, F.cross_entropy(logits, y, label_smoothing=0.1))


def test_mixup_with_lambda_one_is_plain_cross_entropy_and_mixes_convexly():
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 5, (8,))
    onehot = F.one_hot(y, 5).float()
    same_x, same_y = mixup.mix(x, onehot, 1.0)
    assert torch.equal(same_x, x)
    logits = torch.randn(8, 5)
    torch.testing.assert_close(F.cross_entropy(logits, same_y), F.cross_entropy(logits, y))
    mx, my = mixup.mix(x, onehot, 0.3)
    torch.testing.assert_close(mx, 0.3 * x + 0.7 * x.flip(0))
    torch.testing.assert_close(my.sum(1), torch.ones(8))


def test_mixup_draws_lambda_per_batch_and_composes_with_label_smoothing():
    args = SimpleNamespace(alpha=0.2, smoothing=0.1)
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 5, (8,))
    torch.manual_seed(0)
    mx, my = mixup.batch(x, F.one_hot(y, 5).float(), args)
    lam = my[0, y[0]].item() if y[0] != y[-1] else None
    _, q = labelsmooth.batch(mx, my, args)
    torch.testing.assert_close(q.sum(1), torch.ones(8))
    # smoothing the mixed target = mixing the smoothed targets
    torch.manual_seed(0)
    _, smoothed_then_mixed = mixup.batch(x, labelsmooth.smooth(F.one_hot(y, 5).float(), 0.1), args)
    torch.testing.assert_close(q, smoothed_then_mixed)
    assert lam is None or 0 <= lam <= 1


# ---------------------------------------------------------------- distillation

@pytest.fixture
def teacher(run_args, tmp_path):
    common.main(baseline, run_args(out='teacher'))
    return tmp_path / 'teacher' / 'model.pt'


def distill_run(teacher, hard_weight=0.0):
    return SimpleNamespace(args=SimpleNamespace(teacher=str(teacher), teacher_arch=None, temperature=4.0,
                                                hard_weight=hard_weight, soft_weight=1.0))


def test_distillation_soft_loss_is_at_its_minimum_when_the_student_is_the_teacher(teacher):
    run = distill_run(teacher)
    net, _ = distill.load_teacher(str(teacher), None, 3, 'cpu')
    images, y = torch.randn(6, 3, 32, 32), F.one_hot(torch.randint(0, 3, (6,)), 3).float()
    logits = net(images).detach().requires_grad_()
    loss = distill.loss(logits, y, images, run)
    assert loss.item() == pytest.approx(0, abs=1e-6)
    loss.backward()
    assert logits.grad.abs().max() < 1e-6
    worse = distill.loss(logits.detach() + torch.randn(6, 3), y, images, run)
    assert worse > loss


def test_distillation_trains_the_student_and_never_the_teacher(teacher, run_args, tmp_path):
    result = common.main(distill, run_args('--teacher', teacher, '--temperature', '4', out='student'))
    net, _ = distill.load_teacher(str(teacher), None, 3, 'cpu')
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert not net.training
    assert result['tricks']['distill']['temperature'] == 4.0
    assert common.prepare(distill, run_args('--teacher', teacher, out='student2')).loss is distill.loss
    with pytest.raises(SystemExit, match='--teacher PATH is required'):
        common.main(distill, run_args(out='nope'))


# ---------------------------------------------------------------- every script, alone and composed

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


def test_distillation_is_the_papers_eq_6_by_default(teacher, run_args):
    args = common.parse(distill, run_args('--teacher', teacher), common.RECIPE)[0]
    assert (args.hard_weight, args.soft_weight) == (1.0, 1.0)
    run = SimpleNamespace(args=args)
    net, _ = distill.load_teacher(str(teacher), None, 3, 'cpu')
    images, y = torch.randn(6, 3, 32, 32), F.one_hot(torch.randint(0, 3, (6,)), 3).float()
    logits, r = torch.randn(6, 3), net(images)
    t = args.temperature
    eq6 = F.cross_entropy(logits, y) + t * t * (F.softmax(r / t, 1) * (F.log_softmax(r / t, 1) - F.log_softmax(
        logits / t, 1))).sum(1).mean()
    torch.testing.assert_close(distill.loss(logits, y, images, run), eq6)


def test_an_old_checkpoint_or_a_teacher_trained_on_other_images_is_one_clear_line(teacher, run_args, tmp_path):
    last = torch.load(tmp_path / 'teacher' / 'last.pt', weights_only=True)
    torch.save({k: v for k, v in last.items() if k != 'arch'}, tmp_path / 'old-last.pt')  # as last.pt was before
    with pytest.raises(SystemExit, match=r"old-last.pt is not a model.pt of this repo \(a last.pt saved before last.pt "
                                         r"described its net\): pass a run's model.pt"):
        common.main(distill, run_args('--teacher', tmp_path / 'old-last.pt', out='a'))
    saved = torch.load(teacher, weights_only=True)
    torch.save(dict(saved, mean=[0.4914, 0.4822, 0.4465]), tmp_path / 'cifar-teacher.pt')  # CIFAR's statistics
    with pytest.raises(SystemExit, match=r"the teacher's mean \(\[0.4914.*\) is not the student's \(\[0.485"):
        common.main(distill, run_args('--teacher', tmp_path / 'cifar-teacher.pt', out='b'))


def test_a_torchvision_resnet50_teacher_is_built_as_torchvision_builds_it(tmp_path):
    theirs = torchvision.models.resnet50(num_classes=3).eval()
    torch.save(theirs.state_dict(), tmp_path / 'r50.pth')
    ours, saved = distill.load_teacher(str(tmp_path / 'r50.pth'), 'resnet50', 3, 'cpu')
    assert saved is None and ours.options['variant'] == 'B'  # the stride on the 3x3 conv, as torchvision's
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), theirs(x))


def test_distillation_composes_with_mixup_and_label_smoothing(teacher, run_args):
    result = common.main(distill, run_args('--teacher', teacher, '--with', 'mixup', 'labelsmooth', out='student'))
    assert set(result['tricks']) == {'distill', 'mixup', 'labelsmooth'}


@pytest.mark.parametrize('script, other, message', [
    (largebatch, 'warmup', 'largebatch.py and warmup.py both define --warmup-epochs'),
    (mixup, 'mixup', 'mixup is already on'),
])
def test_incompatible_pairs_stop_with_an_error(script, other, message, run_args):
    with pytest.raises(SystemExit, match=message):
        common.main(script, run_args('--with', other))
