"""TensorBoard, --summary, the paper's colour augmentation, LSUV and GHM-C."""
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import baseline
import common
import data
import ema
import ghmc
import lsuv
import models


# ---------------------------------------------------------------- logging

def test_tensorboard_writes_event_files(run_args, tmp_path):
    pytest.importorskip('tensorboard')
    common.main(baseline, run_args('--tensorboard'))
    assert list((tmp_path / 'run' / 'tensorboard').glob('events.out.tfevents.*'))


def test_without_tensorboard_the_run_goes_on_with_one_line(run_args, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)  # as if not installed
    result = common.main(baseline, run_args('--tensorboard'))
    out = capsys.readouterr().out
    assert 'tensorboard is not installed (pip install tensorboard); going on without it' in out
    assert result['final_test_acc'] >= 0 and not (tmp_path / 'run' / 'tensorboard').exists()


def test_summary_prints_every_layer_with_shapes_and_parameters(run_args, capsys):
    common.main(baseline, run_args('--summary'))
    out = capsys.readouterr().out
    assert 'layer3.2.conv2' in out and '(2, 64, 8, 8)' in out and 'fc ' in out
    total = next(line for line in out.splitlines() if line.startswith('total'))
    assert total.endswith('272,019')  # ResNet-20 with a 3-class head: 272,474 - 7 x 65


# ---------------------------------------------------------------- the paper's colour augmentation

def test_pca_lighting_zero_std_is_the_identity_and_shifts_lie_in_the_eigenvector_span():
    x = torch.rand(16, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(data.lighting(x, 0.0, g), x)
    shift = data.lighting(x, 0.1, g) - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift))  # one colour per image
    colours = shift[:, :, 0, 0]
    eigvec = torch.tensor(data.IMAGENET_EIGVEC)
    coords = torch.linalg.solve(eigvec, colours.T).T  # colour = eigvec @ coords
    torch.testing.assert_close(coords @ eigvec.T, colours)
    # the coordinates are alpha_j * eigval_j: the first component dominates, as ImageNet's spectrum
    assert coords[:, 0].abs().mean() > 5 * coords[:, 2].abs().mean()


def test_color_jitter_keeps_range_and_dtype_and_changes_images():
    x = torch.rand(32, 3, 8, 8)
    out = data.color_jitter(x, 0.4, torch.Generator().manual_seed(0))
    assert out.dtype == x.dtype and out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert (out - x).abs().flatten(1).amax(1).min() > 0
    same = data.color_jitter(x, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, x)


def test_colour_augmentation_runs_in_the_loop(run_args):
    result = common.main(baseline, run_args('--color-jitter', '0.4', '--lighting', '0.1'))
    assert result['args']['color_jitter'] == 0.4 and result['args']['lighting'] == 0.1


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


# ---------------------------------------------------------------- GHM-C

def ghm_run(bins, momentum=0.0):
    return SimpleNamespace(args=SimpleNamespace(ghm_bins=bins, ghm_momentum=momentum),
                           extra={'ghm_density': ghmc.Density(bins, 'cpu')})


def test_ghmc_with_one_bin_is_cross_entropy():
    logits, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    onehot = F.one_hot(y, 10).float()
    torch.testing.assert_close(ghmc.loss(logits, onehot, None, ghm_run(1)), F.cross_entropy(logits, y))
    q = torch.softmax(torch.randn(32, 10), 1)  # soft targets too
    torch.testing.assert_close(ghmc.loss(logits, q, None, ghm_run(1)), F.cross_entropy(logits, q))


def test_ghmc_weights_favour_rare_gradients():
    g = torch.tensor([0.01] * 28 + [0.95] * 4)  # many easy examples, few hard ones
    w = ghmc.ghm_weights(g, 10, 0.0)
    assert w[-1] > w[0] and w[-1] / w[0] == pytest.approx(28 / 4)
    assert w.mean() == pytest.approx(1.0)  # 2 bins used: sum w = N
    # g is half the L1 norm of the gradient p - q: 1 - p_y for a class id
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    p = torch.softmax(logits, 1)
    torch.testing.assert_close(0.5 * (p - F.one_hot(y, 3)).abs().sum(1), 1 - p[torch.arange(4), y])


def test_ghmc_momentum_keeps_running_counts_as_mmdet():
    state = ghmc.Density(4, 'cpu')
    w = ghmc.ghm_weights(torch.tensor([0.1, 0.1, 0.9, 0.9]), 4, 0.75, state)
    assert state.counts.tolist() == [0.5, 0, 0, 0.5]  # from 0: 0.25 x the first batch's counts
    assert w.tolist() == [4 / (0.5 * 2)] * 4  # N / (R_bin * m), as mmdet's GHMC
    ghmc.ghm_weights(torch.tensor([0.1, 0.1, 0.1, 0.1]), 4, 0.75, state)
    assert state.counts.tolist() == pytest.approx([0.75 * 0.5 + 0.25 * 4, 0, 0, 0.5])  # an empty bin keeps its count


def test_ghmc_trains_and_composes_with_soft_targets_but_not_with_another_loss(run_args, tmp_path):
    result = common.main(ghmc, run_args('--with', 'mixup', 'labelsmooth'))
    assert set(result['tricks']) == {'ghmc', 'mixup', 'labelsmooth'}
    with pytest.raises(SystemExit, match=r'ghmc\.py and distill\.py both replace the loss'):
        common.main(ghmc, run_args('--with', 'distill', out='x'))


# ---------------------------------------------------------------- the paper's baseline init

def test_init_xavier_flag_reaches_the_net_and_refuses_weights(run_args, tmp_path):
    args = SimpleNamespace(arch='resnet20', seed=0, weights=None, init='xavier', image_size=32)
    net = common.build_net(args, [], 10, print)
    w = net.layer2[0].conv1.weight
    bound = (6 / (w[0].numel() + w.shape[0] * w[0, 0].numel())) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound  # Xavier uniform, not Kaiming normal
    with pytest.raises(SystemExit, match='--init xavier initialises a net from scratch'):
        common.main(baseline, run_args('--init', 'xavier', '--weights', 'IMAGENET1K_V1'))
    assert common.main(baseline, run_args('--init', 'xavier', out='x'))['args']['init'] == 'xavier'
