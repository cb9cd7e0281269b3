"""Shared fixtures: tiny synthetic data sets made in the test, and the real CIFAR-10 copy."""
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torchvision.io import write_jpeg, write_png

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))  # the tools' modules: bench, summarize, tune

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (200, 200, 40)]


def make_folder(root, classes=3, per_class=8, test_per_class=4, sizes=((20, 17), (33, 40), (32, 32))):
    """An ImageFolder tree whose classes are solid colours (plus noise), in odd sizes and modes:
    JPEG and PNG, one grey PNG and one RGBA PNG per split."""
    g = torch.Generator().manual_seed(0)
    for split, n in (('train', per_class), ('test', test_per_class)):
        for c in range(classes):
            d = Path(root) / split / f'class{c}'
            d.mkdir(parents=True)
            for i in range(n):
                h, w = sizes[i % len(sizes)]
                img = torch.tensor(COLOURS[c], dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()
                img = (img.int() + torch.randint(-20, 21, (3, h, w), generator=g)).clamp(0, 255).to(torch.uint8)
                if i == 0 and c == 0:
                    write_png(img[:1].clone(), str(d / f'{i}_grey.png'))  # 1 channel
                elif i == 1 and c == 0:  # torchvision writes no RGBA PNG: PIL does
                    rgba = torch.cat([img, torch.full((1, h, w), 200, dtype=torch.uint8)])
                    Image.fromarray(rgba.permute(1, 2, 0).numpy(), 'RGBA').save(d / f'{i}_rgba.png')
                elif i % 2:
                    write_png(img, str(d / f'{i}.png'))
                else:
                    write_jpeg(img, str(d / f'{i}.jpg'), quality=95)
    return Path(root)


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / 'data')


def run_argv(data_dir, root, epochs, batch_size, device):
    """argv(*extra, out='run') for a short run on data_dir, its cache and run folder under root."""
    def argv(*extra, out='run'):
        return ['--data', str(data_dir), '--epochs', str(epochs), '--batch-size', str(batch_size), '--device', device,
                '--cache-dir', str(root / 'cache'), '--out', str(root / out), *map(str, extra)]
    return argv


@pytest.fixture
def run_args(tmp_path, folder):
    """argv for a one-epoch run on the synthetic folder, everything in tmp_path."""
    return run_argv(folder, tmp_path, epochs=1, batch_size=8, device='cpu')


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


@pytest.fixture(scope='module')
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('smoke')
    return make_folder(root / 'data', classes=3, per_class=8, test_per_class=4), root


@pytest.fixture(scope='session')
def cifar_copy(tmp_path_factory):
    """A small ImageFolder cut of real CIFAR-10 images (100 train and 30 test per class), from what the
    environment variable CIFAR_DIR names: CIFAR-10 as an ImageFolder tree of JPEGs, a .tar.gz of one,
    or torchvision's CIFAR-10 folder (CI and tools/gpu.sh set it). Skipped without it."""
    root = tmp_path_factory.mktemp('cifar')
    keep = {'train': 100, 'test': 30}  # images per class

    def wanted(name):
        parts = Path(name).parts[-3:]  # <split>/<class>/NNNN.jpg
        return len(parts) == 3 and parts[0] in keep and Path(name).stem.isdigit() and int(Path(name).stem) < keep[parts[0]]

    source = os.environ.get('CIFAR_DIR')
    if not source:
        pytest.skip("CIFAR_DIR is not set: point it at CIFAR-10 (an ImageFolder tree of JPEGs, a .tar.gz of one, or "
                    "torchvision's CIFAR-10 folder) to run this test on real images")
    if source.endswith(('.tar.gz', '.tgz')):  # the JPEG copy, packed: only the images kept are unpacked
        with tarfile.open(source) as tar:
            members = [m for m in tar if m.isfile() and wanted(m.name)]
            for m in members:  # <anything>/<split>/<class>/NNNN.jpg -> cifar10/<split>/<class>/NNNN.jpg
                m.name = str(Path('cifar10', *Path(m.name).parts[-3:]))
            tar.extractall(root, members=members, filter='data')
    elif (Path(source) / 'cifar-10-batches-py').is_dir():  # torchvision's CIFAR-10: written out as PNGs
        from support import datasets
        train_x, train_y, test_x, test_y, classes = datasets.load_cifar('cifar10', source)
        for split, images, labels in (('train', train_x, train_y), ('test', test_x, test_y)):
            for label, name in enumerate(classes):
                (root / 'cifar10' / split / name).mkdir(parents=True)
                for i, index in enumerate((labels == label).nonzero().flatten()[:keep[split]].tolist()):
                    write_png(images[index], str(root / 'cifar10' / split / name / f'{i:04d}.png'))
    else:  # the JPEG copy, unpacked
        for path in Path(source).glob('*/*/*.jpg'):
            if wanted(str(path)):
                (root / 'cifar10' / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, root / 'cifar10' / path.relative_to(source))
    if not (root / 'cifar10' / 'train').is_dir():
        pytest.skip(f"CIFAR_DIR={source} holds neither <split>/<class>/NNNN.jpg nor torchvision's CIFAR-10")
    return root / 'cifar10'


def interrupted_in_epoch_2(script, argv, epochs=3):
    """Run script's main with argv, as if Ctrl-C came while epoch 2 trained (before it was saved)."""
    import common
    real, calls = common.train_epoch, []

    def killed(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    common.train_epoch = killed
    try:
        with pytest.raises(SystemExit, match=rf'interrupted: .* holds 1 of {epochs} epochs'):
            common.main(script, argv)
    finally:
        common.train_epoch = real


def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs a CUDA GPU (skipped without one)')


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason='needs a CUDA GPU')
        for item in items:
            if 'gpu' in item.keywords:
                item.add_marker(skip)
