"""The nets: output shapes, exact parameter counts, torchvision compatibility, weight loading."""
import pytest
import torch
import torchvision

import models

# Projection (option-B) shortcuts; the ResNet paper's option-A nets have 269,722 (ResNet-20)
# and 853,018 (ResNet-56) parameters: 2,752 fewer, the two 1x1 conv + BN projections.
CIFAR_COUNTS = {'resnet20': 272_474, 'resnet32': 466_906, 'resnet44': 661_338,
                'resnet56': 855_770, 'resnet110': 1_730_714}


def count(model):
    return sum(p.numel() for p in model.parameters())


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


def test_resnet50_variant_b_computes_torchvision_resnet50():
    theirs = torchvision.models.resnet50().eval()
    ours = models.build('resnet50', 1000, variant='B').eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), theirs(x))
    original = models.build('resnet50', 1000).eval()  # stride on the 1x1 conv: another function
    original.load_state_dict(theirs.state_dict())
    assert not torch.allclose(original(x), theirs(x))


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


def test_resnet50_d_has_timms_weight_names():
    names = [k for k in models.build('resnet50', 1000, variant='D').state_dict() if '.downsample.' in k]
    assert 'layer1.0.downsample.1.weight' in names and 'layer1.0.downsample.2.running_var' in names  # 0: Identity
    assert 'layer2.0.downsample.1.weight' in names and 'layer2.0.downsample.2.bias' in names  # 0: the avg pool
    assert not [k for k in names if '.downsample.0.' in k]


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
