"""How a net starts: zero gamma (with BN and EvoNorm), LSUV, and Xavier init."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import baseline
import common
import ema
import lsuv
import models
import zerogamma


# ---------------------------------------------------------------- zero gamma

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


@pytest.mark.parametrize('arch', ['resnet20', 'resnet18', 'resnet50', 'skresnet18'])
def test_zero_gamma_with_evonorm_makes_every_block_return_relu_of_its_shortcut(arch):
    model = models.build(arch, 10, norm='evonorm', zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if hasattr(m, 'last_bn') or type(m).__name__ == 'BasicBlock']
    for block in blocks:
        cin = block.conv1.paths[0][0].in_channels * 2 if arch.startswith('sk') else block.conv1.in_channels
        x = torch.randn(2, cin, 8, 8)
        shortcut = getattr(block, 'shortcut', None) or block.downsample or nn.Identity()
        torch.testing.assert_close(block(x), F.relu(shortcut(x)), rtol=0, atol=0)
    assert blocks


# ---------------------------------------------------------------- LSUV

def test_lsuv_leaves_every_layer_at_unit_output_variance():
    torch.manual_seed(0)
    net = models.build('resnet20', 10).train()
    x = torch.randn(16, 3, 32, 32)
    before = {k: v.clone() for k, v in net.state_dict().items() if 'running' in k}
    variances = lsuv.lsuv_init(net, x, tol=0.05, iters=10)
    assert len(variances) == 1 + 18 + 2 + 1  # stem, 9 blocks x 2 convs, 2 shortcut convs, fc
    assert all(abs(v - 1) < 0.05 for v in variances.values()), variances
    after = {k: v for k, v in net.state_dict().items() if 'running' in k}
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched


def test_lsuv_runs_on_the_first_batch_and_refuses_pretrained_weights(run_args, capsys):
    common.main(lsuv, run_args())
    assert 'lsuv: 22 layers at unit output variance' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='from scratch'):
        common.main(lsuv, run_args('--weights', 'IMAGENET1K_V1', out='w'))


def test_lsuv_and_ema_combine_in_either_order(run_args, capsys):
    for script, other in ((lsuv, 'ema'), (ema, 'lsuv')):
        result = common.main(script, run_args('--with', other, out=f'{script.__name__}+{other}'))
        assert set(result['tricks']) == {'lsuv', 'ema'}
    assert capsys.readouterr().out.count('lsuv: 22 layers at unit output variance') == 2


# ---------------------------------------------------------------- Xavier init

@pytest.mark.parametrize('arch', ['resnet20', 'skresnet18'])
def test_init_xavier_bounds_weights_zeroes_biases_and_leaves_bn_at_one_and_zero(arch):
    torch.manual_seed(0)
    model = models.init_xavier(models.build(arch, 10))
    checked = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            field = math.prod(w.shape[2:])
            bound = math.sqrt(6 / (w.shape[1] * field + w.shape[0] * field))
            assert w.abs().max() <= bound and (w.numel() < 500 or w.abs().max() > 0.95 * bound)
            assert m.bias is None or m.bias.eq(0).all()
            checked += 1
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert m.weight.eq(1).all() and m.bias.eq(0).all()
    assert checked > 10 and model.fc.bias.eq(0).all()


def test_init_xavier_keeps_zero_gamma():
    model = models.init_xavier(zerogamma.model(models.build('resnet20', 10), SimpleNamespace(weights=None)))
    assert all(block.bn2.weight.eq(0).all() for block in model.layer1)


def test_init_xavier_flag_reaches_the_net_and_refuses_weights(run_args, tmp_path):
    args = SimpleNamespace(arch='resnet20', seed=0, weights=None, init='xavier', image_size=32)
    net = common.build_net(args, [], 10, print)
    w = net.layer2[0].conv1.weight
    bound = (6 / (w[0].numel() + w.shape[0] * w[0, 0].numel())) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound  # Xavier uniform, not Kaiming normal
    with pytest.raises(SystemExit, match='--init xavier initialises a net from scratch'):
        common.main(baseline, run_args('--init', 'xavier', '--weights', 'IMAGENET1K_V1'))
    assert common.main(baseline, run_args('--init', 'xavier', out='x'))['args']['init'] == 'xavier'
