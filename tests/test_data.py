"""Loading (folders, CIFAR-10, cache, streaming, decoding, bad data) and the batched augmentation."""

import json
import re
from pathlib import Path

import pytest
import torch

import baseline
import common
import augment
from conftest import interrupted_in_epoch_2, run_argv
from support import datasets, sources


# ---------------------------------------------------------------- loading

def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_folder_loading_handles_odd_sizes_grey_and_rgba(folder, tmp_path):
    files, classes, others = sources.list_images(folder / 'train')
    assert classes == ['class0', 'class1', 'class2'] and not others
    images, labels = datasets.decode_all(files, 32, square=True)
    assert images.shape == (24, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    grey = next(i for i, (p, _) in enumerate(files) if 'grey' in p.name)
    assert torch.equal(images[grey][0], images[grey][1])  # grey became three equal channels


def test_a_16_bit_png_is_scaled_to_8_bits_not_wrapped(tmp_path):
    import numpy as np
    from PIL import Image
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(tmp_path / 'deep.png')  # 16-bit grey
    try:
        image = datasets.decode(tmp_path / 'deep.png', 8, True)
    except datasets.DataError as e:  # torchvision before 0.20 does not decode them: one line, never a wrapped image
        assert str(e).startswith(f"cannot decode image {tmp_path / 'deep.png'}") and '\n' not in str(e)
        return
    assert image.dtype == torch.uint8 and image.eq(round(40000 / 65535 * 255)).all()  # 156, not 40000 % 256 = 64


def test_folder_cache_is_reused_and_keyed_by_size(folder, tmp_path):
    files, _, _ = sources.list_images(folder / 'train')
    logs = []
    first = datasets.load_split(folder / 'train', files, 32, True, tmp_path, logs.append)
    assert any('cached' in m for m in logs)
    logs.clear()
    second = datasets.load_split(folder / 'train', files, 32, True, tmp_path, logs.append)
    assert not logs and torch.equal(first[0], second[0])
    datasets.load_split(folder / 'train', files, 16, True, tmp_path, logs.append)
    assert any('cached' in m for m in logs)  # another load size: another cache file
    assert len(list(tmp_path.glob('*.pt'))) == 2


def test_kaggle_intel_layout_is_found(tmp_path):
    from conftest import make_folder
    make_folder(tmp_path / 'flat')
    (tmp_path / 'intel' / 'seg_train').mkdir(parents=True)
    (tmp_path / 'intel' / 'seg_test').mkdir(parents=True)
    (tmp_path / 'flat' / 'train').rename(tmp_path / 'intel' / 'seg_train' / 'seg_train')
    (tmp_path / 'flat' / 'test').rename(tmp_path / 'intel' / 'seg_test' / 'seg_test')
    train, test = sources.find_folder_splits(tmp_path / 'intel')
    assert train == tmp_path / 'intel' / 'seg_train' / 'seg_train'
    assert test == tmp_path / 'intel' / 'seg_test' / 'seg_test'


@pytest.mark.parametrize('named', ['train', 'test', 'val'])
def test_a_class_named_like_a_split_is_a_class_not_a_doubled_split_nor_a_cifar_folder(tmp_path, named):
    """bus/car/train was taken for Kaggle's doubled train/train/ and so for no tree at all: CIFAR-10, downloaded
    into the user's folder. The layout comes from what is there, never from a class name."""
    from conftest import make_folder
    root = make_folder(tmp_path / 'vehicles')
    test_split = 'val' if named == 'val' else 'test'  # a class val in val/: the split of its own name
    (root / 'test').rename(root / test_split)
    for split in ('train', test_split):
        for old, new in (('class0', 'bus'), ('class1', 'car'), ('class2', named)):
            (root / split / old).rename(root / split / new)
    source = sources.find_source(root)
    (train, classes, _), (test, _, _) = source.listing
    assert source.dataset == 'folder' and source.splits == (root / 'train', root / test_split)
    assert classes == sorted(['bus', 'car', named]) and len(train) == 24 and len(test) == 12


def test_a_tree_whose_splits_have_other_names_is_not_a_cifar_download_folder(tmp_path):
    from conftest import make_folder
    root = make_folder(tmp_path / 'data')
    (root / 'train').rename(root / 'training')
    (root / 'test').rename(root / 'testing')
    with pytest.raises(sources.DataError, match=r'data holds images but no train/ and test/ folders'):
        sources.find_source(root)


def test_fixed_split_is_disjoint_and_the_same_for_every_run():
    kept, held = datasets.fixed_split(100, 0.1, None)
    assert len(held) == 10 and len(kept) == 90 and not set(kept.tolist()) & set(held.tolist())
    assert torch.equal(kept, datasets.fixed_split(100, 0.1, None)[0])
    assert len(datasets.fixed_split(100, 0.1, 7)[0]) == 7


def test_cifar10_in_torchvisions_format_trains_from_local_files(tmp_path, monkeypatch):
    """The default data path (torchvision's CIFAR-10), offline: files laid out as its download leaves them."""
    import pickle

    import numpy as np
    import torchvision
    folder = tmp_path / 'data' / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for name in names:
        batch = {'data': rng.integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8), 'labels': [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / 'batches.meta').write_bytes(pickle.dumps({'label_names': [f'c{i}' for i in range(10)]}))
    # the real files' checksums cannot match these: skip that check, not the download code
    monkeypatch.setattr(torchvision.datasets.CIFAR10, '_check_integrity', lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, 'check_integrity', lambda *a, **k: True)
    result = common.main(baseline, ['--data', str(tmp_path / 'data'), '--device', 'cpu', '--epochs', '1',
                                    '--batch-size', '8', '--out', str(tmp_path / 'run')])
    assert result['args']['dataset'] == 'cifar10' and result['num_classes'] == 10
    train_images, train_labels, test_images, _, classes = datasets.load_cifar('cifar10', str(tmp_path / 'data'))
    assert train_images.shape == (20, 3, 32, 32) and train_images.dtype == torch.uint8 and len(test_images) == 4
    first = pickle.loads((folder / 'data_batch_1').read_bytes())['data'][0].reshape(3, 32, 32)
    assert torch.equal(train_images[0], torch.from_numpy(first)) and classes[3] == 'c3'


def test_cifar_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision

    def offline(url, download_root, *a, **k):
        Path(download_root).mkdir(parents=True, exist_ok=True)  # as torchvision's does before it downloads
        raise OSError('network is unreachable')
    monkeypatch.setattr(torchvision.datasets.cifar, 'download_and_extract_archive', offline)
    with pytest.raises(SystemExit, match=r'put cifar-10-python\.tar\.gz from https://.* into .* and run again, or '
                                         r'give --data the images as an ImageFolder tree$'):
        common.main(baseline, ['--data', str(tmp_path / 'cifar'), '--device', 'cpu', '--out', str(tmp_path / 'r')])
    assert not (tmp_path / 'cifar').exists()  # the folder made for the download that failed is not left behind


def test_streaming_gives_the_numbers_in_memory_gives_also_with_mixup_and_across_a_resume(run_args, tmp_path, capsys):
    """The DataLoader draws its workers' seed from its own generator, not from the global one that mixup's batches
    and colour jitter's order draw from: where the images live changes no number, also when a run resumes across
    the switch."""
    import mixup
    flags = ('--epochs', '2', '--color-jitter', '0.4')
    common.main(mixup, run_args(*flags, out='memory'))
    common.main(mixup, run_args(*flags, '--stream', out='streamed'))
    assert 'streaming' in capsys.readouterr().out
    interrupted_in_epoch_2(mixup, run_args(*flags, '--stream', out='switched'), epochs=2)
    common.main(mixup, run_args(*flags, '--resume', out='switched'))  # epoch 2 in memory

    def numbers(out):
        rows = [json.loads(line) for line in (tmp_path / out / 'log.jsonl').read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ('images_per_sec', 'epoch_seconds')} for r in rows]
    assert len(numbers('memory')) == 2
    assert numbers('streamed') == numbers('memory') and numbers('switched') == numbers('memory')


# ---------------------------------------------------------------- bad data: one clear line

def test_missing_or_empty_data_dirs(tmp_path, run_args):
    argv = run_args()
    argv[1] = str(tmp_path / 'nowhere')
    with pytest.raises(SystemExit, match='no such folder|not an ImageFolder'):
        common.main(baseline, argv + ['--dataset', 'folder'])
    (tmp_path / 'empty' / 'train' / 'a').mkdir(parents=True)
    (tmp_path / 'empty' / 'test').mkdir()
    argv[1] = str(tmp_path / 'empty')
    with pytest.raises(SystemExit, match=r"class folder .*empty/train/a has no images"):
        common.main(baseline, argv)


def test_a_file_as_data_is_named_as_a_file(tmp_path, run_args):
    (tmp_path / 'cifar.zip').write_bytes(b'PK')
    argv = run_args()
    argv[1] = str(tmp_path / 'cifar.zip')
    with pytest.raises(SystemExit, match=r'^error: --data .*cifar.zip is a file: give a folder'):
        common.main(baseline, argv)


def test_a_split_folder_or_a_flat_folder_as_data_is_not_a_cifar_download_target(folder, run_args):
    argv = run_args()
    argv[1] = str(folder / 'train')  # class folders, no train/ and test/
    with pytest.raises(SystemExit, match=r'train holds images but no train/ and test/ folders: point --data at the '
                                         'folder that holds'):
        common.main(baseline, argv)


def test_a_val_split_that_leaves_no_training_image_says_so(run_args):
    with pytest.raises(SystemExit, match=r'--val-split 0.99 holds out 24 of the 24 training images and leaves none'):
        common.main(baseline, run_args('--val-split', '0.99'))


def test_image_size_on_cifar_is_refused(tmp_path):
    with pytest.raises(SystemExit, match='--image-size 64: cifar10 images are 32 px'):
        common.main(baseline, ['--dataset', 'cifar10', '--image-size', '64', '--data', str(tmp_path), '--device', 'cpu'])


@pytest.mark.parametrize('stream', [[], ['--stream']])
def test_unreadable_image_is_named(folder, run_args, stream):
    bad = folder / 'train' / 'class1' / 'broken.jpg'
    bad.write_bytes(b'not a jpeg at all')
    with pytest.raises(SystemExit, match=r'^error: cannot decode image .*broken\.jpg[^\n]*$'):
        common.main(baseline, run_args(*stream))


@pytest.mark.parametrize('where', ['a file', 'under a file'])
def test_a_cache_dir_that_cannot_be_made_or_written_is_one_line(where, folder, tmp_path):
    (tmp_path / 'afile').write_text('x')
    cache = tmp_path / 'afile' if where == 'a file' else tmp_path / 'afile' / 'cache'
    argv = run_argv(folder, tmp_path, epochs=1, batch_size=8, device='cpu')()
    argv[argv.index('--cache-dir') + 1] = str(cache)
    with pytest.raises(SystemExit, match=r'--cache-dir .*afile.*: cannot write the decoded images there .*: give a '
                                         'folder you can write to'):
        common.main(baseline, argv)


def listing_problem(folder, problem):
    """Spoil the synthetic folder as a user's data set may be; the line it should give."""
    import os
    import shutil
    if problem == 'a test class that train lacks':
        shutil.copytree(folder / 'test' / 'class0', folder / 'test' / 'class9')
        return r'test has class folders that train/ lacks: class9: remove them, or add them to train/ too'
    if problem == 'an empty test split':
        for d in (folder / 'test').iterdir():
            shutil.rmtree(d)
        return r'test holds no images: put them in .*test/<class>/, one folder per class of train/'
    if problem == 'an empty class folder':
        (folder / 'train' / 'class3').mkdir()
        return r'class folder .*train/class3 has no images .*: add some or remove the folder'
    if problem == 'a symlink loop':
        os.symlink('x.jpg', folder / 'train' / 'class1' / 'x.jpg')
        return r'train/class1/x\.jpg is a symbolic link loop: fetch the data set.s contents .* or delete the broken'
    # git-annex and DVC data sets before their contents are fetched: every image a link to nothing
    for image in (folder / 'train' / 'class2').iterdir():
        image.unlink()
        os.symlink(f'../../.git/annex/objects/{image.name}', image)
    return (r'train/class2/0\.jpg is a symbolic link to \.\./\.\./\.git/annex/objects/0\.jpg, which does not exist '
            r'\(and 7 more under .*train\): fetch the data set.s contents \(git annex get, dvc pull\) or delete')


@pytest.mark.parametrize('problem', ['a test class that train lacks', 'an empty test split', 'an empty class folder',
                                     'a symlink loop', 'dangling symlinks'])
def test_a_problem_in_the_listing_stops_in_one_line_also_with_an_image_size(problem, folder, run_args):
    """--image-size skips the guess of the size, which listed train/ inside the one-line handling: the listing
    then ran first in the data's fingerprint, which raised a traceback."""
    expected = listing_problem(folder, problem)
    with pytest.raises(SystemExit) as e:
        common.main(baseline, run_args('--image-size', '32'))
    assert re.match(rf'^error: .*{expected}', str(e.value)) and '\n' not in str(e.value), str(e.value)


def test_a_full_cache_dir_leaves_no_part_of_a_cache_file(folder, tmp_path, monkeypatch):
    import errno
    files, _, _ = sources.list_images(folder / 'train')

    def disk_full(obj, path):
        with open(path, 'wb') as f:
            f.write(b'\0' * 4096)  # what fitted
        raise OSError(errno.ENOSPC, 'No space left on device')  # root ignores chmod: a full disk by hand
    monkeypatch.setattr(torch, 'save', disk_full)
    with pytest.raises(datasets.DataError, match=r'--cache-dir .*cache: cannot write the decoded images there '
                                                 r'\(.*No space left on device\): give a folder'):
        datasets.load_split(folder / 'train', files, 32, True, tmp_path / 'cache', print)
    assert list((tmp_path / 'cache').iterdir()) == []


def test_one_pixel_images_are_refused_as_too_small_before_training(tmp_path, run_args):
    """They trained to a nan loss and the advice to lower --lr."""
    from conftest import make_folder
    tiny = make_folder(tmp_path / 'tiny', sizes=((1, 1),))
    argv = run_args()
    argv[1] = str(tiny)
    with pytest.raises(SystemExit, match=r'^error: the images in .*tiny/train are 1 px .*: too small for the nets '
                                         r'here: give --image-size 8 or more to enlarge them, or larger images$'):
        common.main(baseline, argv)


def test_a_single_class_folder_is_refused_as_nothing_to_classify(tmp_path, run_args):
    from conftest import make_folder
    one = make_folder(tmp_path / 'one', classes=1)
    argv = run_args()
    argv[1] = str(one)
    with pytest.raises(SystemExit, match=r'^error: .*one/train holds one class folder \(class0\): with one class there '
                                         'is nothing to classify'):
        common.main(baseline, argv)


def test_a_val_split_that_rounds_to_no_image_is_refused(run_args):
    """It trained with no val set, so no val_acc (tools/tune.py then failed on its KeyError)."""
    with pytest.raises(SystemExit, match=r'^error: --val-split 0.01 holds out none of the 24 training images \(24 x '
                                         r'0.01 rounds to 0\): give at least 0.042, or drop the flag$'):
        common.main(baseline, run_args('--val-split', '0.01'))


def test_a_truncated_cifar_archive_is_named_by_its_checksum(tmp_path, monkeypatch):
    """Not the advice to put that very file there."""
    import torchvision

    def offline(*a, **k):
        raise OSError('network is unreachable')
    monkeypatch.setattr(torchvision.datasets.cifar, 'download_and_extract_archive', offline)
    (tmp_path / 'cifar-10-python.tar.gz').write_bytes(b'\x1f\x8b' + b'\0' * 1000)  # a download cut short
    with pytest.raises(datasets.DataError, match=r'cifar-10-python.tar.gz is damaged: its MD5 checksum is not '
                                                 r'c58f30108f718f92721af3b95e74349a .*: delete it and run again'):
        datasets.load_cifar('cifar10', str(tmp_path))


# ---------------------------------------------------------------- the batched augmentation

def test_random_crop_is_a_window_of_the_zero_padded_image_mirrored_for_about_half():
    images = torch.randint(1, 256, (200, 3, 8, 8), dtype=torch.uint8)  # no zeros inside
    out = augment.random_crop_flip(images, 4, gen())
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    offsets, mirrored = set(), 0
    for pad, crop in zip(padded, out):
        windows = {(dy, dx): pad[:, dy:dy + 8, dx:dx + 8] for dy in range(9) for dx in range(9)}
        hits = [k for k, win in windows.items() if torch.equal(win, crop)]
        flips = [k for k, win in windows.items() if torch.equal(win.flip(2), crop)]
        assert hits or flips, 'a crop is neither a window of the padded image nor its mirror'
        offsets.add((hits or flips)[0])
        mirrored += not hits
    assert len(offsets) > 40  # the offsets really vary
    assert 60 < mirrored < 140


def test_random_flip_flips_about_half_and_nothing_else():
    images = torch.rand(200, 3, 5, 7)
    out = augment.random_flip(images, gen())
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert 60 < mirrored.sum() < 140


def test_random_resized_crop_boxes_lie_inside_and_keep_range():
    # an image whose pixel value is its column index: a crop of columns [x0, x1] only holds values inside it
    w = 40
    images = torch.arange(w, dtype=torch.float).expand(16, 3, w, w).contiguous()
    out = augment.random_resized_crop(images, 24, gen())
    assert out.shape == (16, 3, 24, 24)
    assert out.min() >= 0 and out.max() <= w - 1
    # a crop is a resampled box: values increase left to right
    assert (out[:, 0, 12].diff(dim=-1) >= -1e-4).all()


def test_test_view_is_the_centre_crop():
    images = torch.arange(10 * 10, dtype=torch.uint8).view(1, 1, 10, 10).expand(2, 3, 10, 10)
    out = augment.test_view(images, 6, 10)
    assert torch.equal(out * 255, images[:, :, 2:8, 2:8].float())


def test_large_images_get_random_resized_crop_and_a_load_size_above_the_training_size():
    assert augment.load_size(32) == 32 and augment.load_size(64) == 64 and augment.load_size(224) == 256
    out = augment.train_view(torch.randint(0, 256, (4, 3, 110, 110), dtype=torch.uint8), 96, gen())
    assert out.shape == (4, 3, 96, 96) and 0 <= out.min() and out.max() <= 1


def test_labels_follow_their_images_through_the_whole_pipeline(run_args):
    """Each class of the synthetic folder is a solid colour: after crop, flip and normalising,
    the centre pixel of every training image must still carry its label's colour (class 0's grey
    image, as near blue as red, must carry label 0)."""
    run = common.prepare(baseline, run_args('--batch-size', '4', '--no-channels-last'))
    from conftest import COLOURS
    colours = torch.tensor(COLOURS[:3], dtype=torch.float) / 255
    seen = 0
    for x, y in common.train_batches(run, epoch=0):
        pixel = (x * run.data.std + run.data.mean)[:, :, x.shape[2] // 2, x.shape[3] // 2]
        nearest = torch.cdist(pixel, colours).argmin(1)
        grey = pixel.max(1).values - pixel.min(1).values < 0.3  # colours: 0.7 apart; the noise: +-0.08
        nearest[grey] = 0
        assert torch.equal(nearest, y.argmax(1))  # targets: one-hot rows
        seen += len(y)
    assert seen == len(run.data.train_index) // 4 * 4


# ---------------------------------------------------------------- the paper's colour augmentation

def test_pca_lighting_zero_std_is_the_identity_and_shifts_lie_in_the_eigenvector_span():
    x = torch.rand(16, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment.lighting(x, 0.0, g), x)
    shift = augment.lighting(x, 0.1, g) - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift))  # one colour per image
    colours = shift[:, :, 0, 0]
    eigvec = torch.tensor(augment.IMAGENET_EIGVEC)
    coords = torch.linalg.solve(eigvec, colours.T).T  # colour = eigvec @ coords
    torch.testing.assert_close(coords @ eigvec.T, colours)
    # the coordinates are alpha_j * eigval_j: the first component dominates, as ImageNet's spectrum
    assert coords[:, 0].abs().mean() > 5 * coords[:, 2].abs().mean()


def test_color_jitter_keeps_range_and_dtype_and_changes_images():
    x = torch.rand(32, 3, 8, 8)
    out = augment.color_jitter(x, 0.4, torch.Generator().manual_seed(0))
    assert out.dtype == x.dtype and out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert (out - x).abs().flatten(1).amax(1).min() > 0
    same = augment.color_jitter(x, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, x)


def test_colour_augmentation_runs_in_the_loop(run_args):
    result = common.main(baseline, run_args('--color-jitter', '0.4', '--lighting', '0.1'))
    assert result['args']['color_jitter'] == 0.4 and result['args']['lighting'] == 0.1


def test_a_subset_decodes_and_caches_only_its_images_the_same_ones_and_a_full_load_then_decodes_all(folder, tmp_path):
    """--subset and --test-subset decode only the images the run uses (their own cache file, which a full load does
    not take for the whole split), and pick the same images of the sorted listings as a full load does."""
    source, logs = sources.find_source(folder), []

    def load(**split_args):
        logs.clear()
        return datasets.load(source, 32, torch.device('cpu'), logs.append, cache_dir=tmp_path / 'cache', **split_args)

    def decoded():
        return [int(m.split()[1]) for m in logs if m.startswith('cached ')]
    part = load(val_split=0.25, subset=5, test_subset=3)
    assert decoded() == [5 + 6, 3] and '11 of 24 train / 3 of 12 test images' in logs[-1]
    whole = load(val_split=0.25)
    assert decoded() == [24, 12] and len(whole.train) == 24
    kept, held = datasets.fixed_split(24, 0.25, 5)
    for split, index, full_index in ((part.train, part.train_index, kept), (part.train, part.val_index, held),
                                     (part.test, part.test_index, datasets.fixed_split(12, 0, 3, test=True)[0])):
        full = whole.train if split is part.train else whole.test
        assert torch.equal(split.images[index], full.images[full_index])
        assert torch.equal(split.labels[index], full.labels[full_index])
    assert torch.equal(whole.val_index, held) and len(part.train_index) == 5 and len(part.test_index) == 3
