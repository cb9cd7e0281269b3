"""FixRes (testing at a higher resolution, fine-tuning) and pretrained.py (ImageNet weights, offline)."""
import json

import pytest
import torch
import torchvision

import baseline
import common
import fixres
import pretrained


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


def test_pretrained_weights_that_cannot_be_downloaded_say_so_and_name_weights_path(big_args, monkeypatch):
    """Offline, the run ended on a bare '<urlopen error [Errno -3] Temporary failure in name resolution>'."""
    import urllib.error

    import torchvision.models._api as api

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(-3, 'Temporary failure in name resolution'))
    monkeypatch.setattr(api, 'load_state_dict_from_url', offline)
    with pytest.raises(SystemExit, match=r"^error: --weights IMAGENET1K_V1: torchvision's resnet18 weights could not "
                                         r"be downloaded \(\[Errno -3\] Temporary failure in name resolution\): "
                                         r"go online once .*, or give --weights PATH, a local file: torch.save\("
                                         r"torchvision.models.resnet18\(weights='IMAGENET1K_V1'\).state_dict\(\), "
                                         r"PATH\) where it is online$"):
        common.prepare(pretrained, big_args())
