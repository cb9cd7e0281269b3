"""The nets: shapes and counts, torchvision's, ResNet-B/C/D, EvoNorm, SK-ResNet, EfficientNet, RegNet, weights."""
import json
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import baseline
import common
import evonorm
import models
import resnet_d
import zerogamma
from conftest import make_folder
from models.evonorm import EvoNormS0
from models.skresnet import SelectiveKernel


# Projection (option-B) shortcuts; the ResNet paper's option-A nets have 269,722 (ResNet-20)
# and 853,018 (ResNet-56) parameters: 2,752 fewer, the two 1x1 conv + BN projections.
CIFAR_COUNTS = {'resnet20': 272_474, 'resnet32': 466_906, 'resnet44': 661_338,
                'resnet56': 855_770, 'resnet110': 1_730_714}


def count(model):
    return sum(p.numel() for p in model.parameters())


# this file's own big_args (8 images a class, batch 8, no --arch), not conftest.py's
@pytest.fixture
def big_args(tmp_path):
    """argv for a one-epoch run on folder data above 64 px, for the nets with a 32x downsampling."""
    folder = make_folder(tmp_path / 'big', sizes=((90, 80), (72, 100), (96, 96)))

    def argv(*extra, out='run'):
        return ['--data', str(folder), '--epochs', '1', '--batch-size', '8', '--device', 'cpu',
                '--image-size', '72', '--cache-dir', str(tmp_path / 'cache'), '--out', str(tmp_path / out),
                *map(str, extra)]
    return argv


# ---------------------------------------------------------------- ResNets

@pytest.mark.parametrize('arch', models.CIFAR_ARCHS)
def test_cifar_resnet_shapes_and_counts(arch):
    model = models.build(arch, 10)
    assert count(model) == CIFAR_COUNTS[arch]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_difference_is_the_two_projection_shortcuts():
    # stage 2 and 3 each open with a 1x1 conv + BN shortcut: 16*32 + 2*32 and 32*64 + 2*64
    assert CIFAR_COUNTS['resnet20'] - 269_722 == (16 * 32 + 64) + (32 * 64 + 128)
    assert CIFAR_COUNTS['resnet56'] - 853_018 == (16 * 32 + 64) + (32 * 64 + 128)


@pytest.mark.parametrize('arch', models.IMAGENET_ARCHS)
def test_imagenet_resnets_match_torchvision(arch):
    ours, theirs = models.build(arch, 1000), getattr(torchvision.models, arch)()
    assert count(ours) == count(theirs)
    ours.load_state_dict(theirs.state_dict())  # every name and shape matches
    assert ours(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_resnet18_on_cifar_sized_images_has_the_cifar_stem():
    options = models.size_options('resnet18', 32)
    net = models.build('resnet18', 10, **options)
    assert options == {'stem': 'cifar'} and count(net) == 11_173_962  # kuangliu/pytorch-cifar's ResNet18
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and isinstance(net.maxpool, torch.nn.Identity)
    inside = []
    net.layer1.register_forward_hook(lambda m, i, o: inside.append(o.shape[-1]))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10) and inside == [32]  # the first block sees 32 x 32
    assert models.size_options('resnet18', 224) == {} and models.size_options('resnet20', 32) == {}
    for variant in ('C', 'D'):  # the tricks' switches work on it
        tweaked = models.build('resnet18', 10, variant=variant, zero_init_residual=True, **options)
        assert tweaked(torch.randn(2, 3, 32, 32)).shape == (2, 10) and tweaked.layer1[0].bn2.weight.eq(0).all()


def test_build_records_how_to_rebuild():
    model = models.build('resnet20', 7, zero_init_residual=True)
    assert model.arch == 'resnet20' and model.options == {'zero_init_residual': True, 'num_classes': 7}
    again = models.rebuild(model, variant='D')
    assert again.options == {'zero_init_residual': True, 'variant': 'D', 'num_classes': 7}


def test_unknown_arch_and_variant_are_errors():
    with pytest.raises(ValueError, match='unknown arch'):
        models.build('resnet21', 10)
    with pytest.raises(ValueError, match='does not exist for CIFAR'):
        models.build('resnet20', 10, variant='B')
    with pytest.raises(ValueError, match='basic blocks'):
        models.build('resnet18', 10, variant='B')


# ---------------------------------------------------------------- ResNet-B/C/D (resnet_d.py)

def test_resnet50_variant_b_computes_torchvision_resnet50():
    theirs = torchvision.models.resnet50().eval()
    ours = models.build('resnet50', 1000, variant='B').eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), theirs(x))
    original = models.build('resnet50', 1000).eval()  # stride on the 1x1 conv: another function
    original.load_state_dict(theirs.state_dict())
    assert not torch.allclose(original(x), theirs(x))


def test_resnet50_d_has_timms_weight_names():
    names = [k for k in models.build('resnet50', 1000, variant='D').state_dict() if '.downsample.' in k]
    assert 'layer1.0.downsample.1.weight' in names and 'layer1.0.downsample.2.running_var' in names  # 0: Identity
    assert 'layer2.0.downsample.1.weight' in names and 'layer2.0.downsample.2.bias' in names  # 0: the avg pool
    assert not [k for k in names if '.downsample.0.' in k]


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


# ---------------------------------------------------------------- EvoNorm-S0

@pytest.mark.parametrize('apply_act', [True, False])
@pytest.mark.parametrize('channels, groups', [(64, 32), (16, 16), (48, 24)])  # 48: 32 groups capped to 24
def test_evonorm_s0_matches_its_formula(apply_act, channels, groups):
    layer = EvoNormS0(channels, apply_act=apply_act)
    assert layer.groups == groups
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.randn(3, channels, 5, 7) * 3 + 1
    expected = torch.empty_like(x)
    size = channels // groups
    for n in range(3):
        for g in range(groups):
            part = x[n, g * size:(g + 1) * size]
            std = ((part - part.mean()) ** 2).mean().add(1e-5).sqrt()
            sl = slice(g * size, (g + 1) * size)
            num = part * torch.sigmoid(layer.v[0, sl] * part) if apply_act else part
            expected[n, sl] = num / std * layer.weight[0, sl] + layer.bias[0, sl]
    torch.testing.assert_close(layer(x), expected)
    assert (layer.v is None) == (not apply_act)


def test_evonorm_starts_at_v_gamma_one_beta_zero_and_ignores_the_batch():
    layer = EvoNormS0(32)
    assert all(p.shape == (1, 32, 1, 1) for p in layer.parameters())
    assert layer.v.eq(1).all() and layer.weight.eq(1).all() and layer.bias.eq(0).all()
    x = torch.randn(4, 32, 6, 6)
    torch.testing.assert_close(layer(x)[:1], layer(x[:1]))  # a sample's output is its own


def test_evonorm_replaces_every_bn_relu_pair_and_keeps_the_relu_after_the_addition():
    net = models.build('resnet18', 10, norm='evonorm')
    norms = [m for m in net.modules() if isinstance(m, EvoNormS0)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(m.apply_act for m in norms) == 1 + 8  # the stem's and each block's first
    assert sum(not m.apply_act for m in norms) == 8 + 3  # each block's last, the 3 shortcuts
    assert isinstance(net.layer1[0].relu, nn.ReLU) and isinstance(net.layer1[0].act1, nn.Identity)
    assert isinstance(net.layer2[0].downsample[1], EvoNormS0) and not net.layer2[0].downsample[1].apply_act


def test_evonorm_script_trains_one_tiny_epoch(run_args, tmp_path):
    result = common.main(evonorm, run_args())
    assert result['tricks'] == {'evonorm': {}} and 0 <= result['final_test_acc'] <= 100
    assert json.loads((tmp_path / 'run' / 'result.json').read_text())['script'] == 'evonorm'
    saved = torch.load(tmp_path / 'run' / 'model.pt', weights_only=True)
    assert saved['options'] == {'norm': 'evonorm', 'num_classes': 3}
    assert any(k.endswith('.v') for k in saved['state_dict'])


# ---------------------------------------------------------------- parameter counts, SK-ResNet

def test_parameter_counts():
    assert count(models.build('skresnet18', 1000)) == 11_878_184
    assert count(models.build('skresnet34', 1000)) == 22_168_744
    assert count(models.build('resnet20', 10, norm='evonorm')) == 272_826  # + 352 v's
    assert count(models.build('resnet56', 10, norm='evonorm')) == 856_794
    assert count(models.build('resnet18', 1000, norm='evonorm')) == 11_691_496
    assert count(models.build('resnet50', 1000, norm='evonorm')) == 25_564_648  # + 7,616 v's
    assert count(models.build('efficientnet_b0', 1000)) == 5_288_548
    assert count(models.build('regnety_400mf', 1000)) == 4_344_144


def test_sk_attention_width_and_timm_layout(monkeypatch):
    # d = max(C/16, 32) = 32 in every stage; with timm's wider attention (r=8, L=16: d = 16, 16, 32,
    # 64) the same net has timm's published skresnet18/34 counts
    monkeypatch.setattr(SelectiveKernel.__init__, '__defaults__', (8, 16))
    assert count(models.build('skresnet18', 1000)) == 11_958_056
    assert count(models.build('skresnet34', 1000)) == 22_282_376
    monkeypatch.undo()
    sk = models.build('skresnet18', 10).layer3[0].conv1
    assert sk.fc_reduce.out_features == 32 and sk.fc_select.out_features == 2 * 256
    assert [p[0].dilation for p in sk.paths] == [(1, 1), (2, 2)] and sk.paths[0][0].in_channels == 128 // 2


def test_selective_kernel_is_the_attention_weighted_sum_of_its_branches():
    sk = SelectiveKernel(8, 6, 1, 'bn').eval()
    with torch.no_grad():
        sk.bn.running_mean.normal_()
    x = torch.randn(2, 8, 5, 5)
    u1, u2 = sk.paths[0](x[:, :4]), sk.paths[1](x[:, 4:])
    z = F.relu(sk.bn(sk.fc_reduce((u1 + u2).mean((2, 3)))))
    a = torch.softmax(sk.fc_select(z).view(2, 2, 6), 1)
    torch.testing.assert_close(sk(x), a[:, 0, :, None, None] * u1 + a[:, 1, :, None, None] * u2)
    nn.init.zeros_(sk.fc_select.weight)  # equal attention: the mean of the branches
    torch.testing.assert_close(sk(x), (u1 + u2) / 2)


# ---------------------------------------------------------------- the archs for folder data

@pytest.mark.parametrize('arch', ['efficientnet_b0', 'regnety_400mf', 'skresnet18'])
def test_folder_arch_builds_and_trains_one_tiny_epoch(arch, big_args, tmp_path):
    net = models.build(arch, 5)
    assert net.arch == arch and net.options == {'num_classes': 5}
    assert net.eval()(torch.randn(2, 3, 72, 72)).shape == (2, 5)
    result = common.main(baseline, big_args('--arch', arch))
    assert result['args']['arch'] == arch and 0 <= result['final_test_acc'] <= 100
    saved = torch.load(tmp_path / 'run' / 'model.pt', weights_only=True)
    models.build(arch, **saved['options']).load_state_dict(saved['state_dict'])  # rebuilds from model.pt


@pytest.mark.parametrize('script, message', [(zerogamma, 'zero gamma does not apply to efficientnet_b0'),
                                             (resnet_d, 'ResNet-D does not apply to efficientnet_b0'),
                                             (evonorm, "norm='evonorm' does not apply to efficientnet_b0")])
def test_tricks_that_do_not_apply_to_torchvision_nets_stop(script, message, big_args):
    with pytest.raises(SystemExit, match=message):
        common.main(script, big_args('--arch', 'efficientnet_b0'))


def test_switches_that_do_not_apply_are_errors():
    for arch in models.TORCHVISION_ARCHS:
        for switch in (dict(zero_init_residual=True), dict(variant='D'), dict(norm='evonorm')):
            with pytest.raises(ValueError, match=f'does not apply to {arch}: .* torchvision'):
                models.build(arch, 10, **switch)
    with pytest.raises(ValueError, match='not built for skresnet18'):
        models.build('skresnet18', 10, variant='D')
    with pytest.raises(ValueError, match="norm 'gn' does not exist"):
        models.build('resnet20', 10, norm='gn')
    assert set(models.ARCHS) >= {'efficientnet_b0', 'regnety_400mf', 'skresnet18', 'skresnet34', 'resnet20'}


# ---------------------------------------------------------------- weight loading

def test_load_weights_from_a_torchvision_file_with_a_new_head(tmp_path):
    path = tmp_path / 'resnet18.pth'
    theirs = torchvision.models.resnet18()
    torch.save(theirs.state_dict(), path)
    ours = models.build('resnet18', 6)
    message = models.load_weights(ours, str(path))
    assert 'new 6-class classifier' in message
    torch.testing.assert_close(ours.conv1.weight, theirs.conv1.weight)
    assert ours.fc.out_features == 6


def test_load_weights_that_do_not_fit_is_an_error(tmp_path):
    path = tmp_path / 'r34.pth'
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(ValueError, match='does not fit resnet18'):
        models.load_weights(models.build('resnet18', 10), str(path))


@pytest.mark.parametrize('arch, theirs, head', [
    ('efficientnet_b0', torchvision.models.efficientnet_b0, 'classifier.1.'),
    ('regnety_400mf', torchvision.models.regnet_y_400mf, 'fc.'),
])
def test_load_torchvision_weights_from_a_file_with_a_new_head(arch, theirs, head, tmp_path):
    path = tmp_path / f'{arch}.pth'
    state = theirs().state_dict()
    torch.save(state, path)
    ours = models.build(arch, 3)
    fresh = {k: v.clone() for k, v in ours.state_dict().items() if k.startswith(head)}
    assert 'new 3-class classifier' in models.load_weights(ours, str(path))
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(v, fresh[k] if k.startswith(head) else state[k], rtol=0, atol=0)
    assert set(fresh) == {head + 'weight', head + 'bias'} and ours.state_dict()[head + 'weight'].shape[0] == 3


def test_load_weights_that_do_not_fit_or_do_not_exist_are_errors(tmp_path):
    path = tmp_path / 'regnet.pth'
    torch.save(torchvision.models.regnet_y_400mf().state_dict(), path)
    with pytest.raises(ValueError, match='does not fit efficientnet_b0'):
        models.load_weights(models.build('efficientnet_b0', 3), str(path))
    with pytest.raises(ValueError, match='torchvision has no weights for skresnet18'):
        models.load_weights(models.build('skresnet18', 3), 'IMAGENET1K_V1')
    with pytest.raises(ValueError, match='not a torchvision weight name for regnety_400mf .choose from IMAGENET1K_V1'):
        models.load_weights(models.build('regnety_400mf', 3), 'IMAGENET1K_V9')  # offline: stops before a download


def run_model_file(path, arch='resnet20', classes=3):
    """A model.pt as a run saves it (archive.model_file), for a net built afresh: no training needed."""
    torch.manual_seed(1)
    net = models.build(arch, classes)
    torch.save({'arch': arch, 'options': net.options, 'classes': [f'class{i}' for i in range(classes)],
                'image_size': 32, 'test_image_size': 32, 'load_size': 32, 'test_load_size': 32,
                'mean': [0.5] * 3, 'std': [0.25] * 3, 'dataset': 'folder', 'data': None,
                'state_dict': net.state_dict(), 'extra': {}}, path)
    return net


def weights_args(weights, arch='resnet20'):
    return SimpleNamespace(seed=0, arch=arch, image_size=32, init='default', weights=str(weights))


def test_weights_that_torch_cannot_read_stop_in_one_line_of_this_project(tmp_path):
    """Not an UnpicklingError, nor torch's advice to load the file with weights_only=False."""
    from support.nets import build_net
    (tmp_path / 'noise.pt').write_bytes(bytes(range(256)) * 4)
    torch.save(models.build('resnet20', 3), tmp_path / 'whole-net.pt')  # the net pickled, not its state_dict
    pickled = r'it pickles Python objects, not only tensors \(models.cifar_resnet.CifarResNet\)'
    for name, why in [('noise.pt', 'it is not a file torch.save wrote'), ('whole-net.pt', pickled)]:
        with pytest.raises(SystemExit) as e:
            build_net(weights_args(tmp_path / name), [], 3, print)
        line = str(e.value)
        assert re.fullmatch(rf"error: --weights .*{name}: torch cannot read it: {why}: give a state-dict file "
                            r"\(torch.save\(net.state_dict\(\), PATH\)\) or a run's model.pt", line), line


def test_weights_given_a_runs_model_file_load_its_weights_whatever_its_name(tmp_path, monkeypatch):
    """A file is a file even without .pt or a folder in its name; it was taken for a torchvision weight name."""
    monkeypatch.chdir(tmp_path)
    saved = run_model_file(tmp_path / 'resnet20-cifar')
    net = models.build('resnet20', 3)
    assert models.load_weights(net, 'resnet20-cifar') == 'loaded 128 tensors from resnet20-cifar'
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), saved.state_dict().values()))
    with pytest.raises(ValueError, match=r"--weights resnet20-cifar is a model.pt of a resnet20, and this run builds a "
                                         r"resnet32: pass --arch resnet20 to start from it \(evaluate.py tests it; "
                                         r"distill.py --teacher learns from it\)"):
        models.load_weights(models.build('resnet32', 3), 'resnet20-cifar')


def test_a_model_file_or_teacher_that_torch_cannot_read_gets_this_projects_line(tmp_path):
    from support import archive
    torch.save(models.build('resnet20', 3), tmp_path / 'model.pt')  # the whole net pickled
    with pytest.raises(SystemExit) as e:
        archive.load_model_file(tmp_path / 'model.pt')  # evaluate.py's model, distill.py's --teacher
    assert str(e.value) == (f"error: cannot read {tmp_path / 'model.pt'}: torch cannot read it: it pickles Python "
                            "objects, not only tensors (models.cifar_resnet.CifarResNet): pass a run's model.pt (or "
                            "last.pt)")
