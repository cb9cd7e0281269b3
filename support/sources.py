"""Where a run's images are: the data set behind --data (CIFAR, or an ImageFolder tree: its layout, its
classes and images, listed once, and their size) and the fingerprint that ties a run to those files.
How they are decoded, held and batched: datasets.py.
"""
import errno
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import augment

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.webp')  # what torchvision.io decodes


class DataError(Exception):
    """A problem with the user's data, reported as one line."""


# ---------------------------------------------------------------- ImageFolder trees

TRAIN_NAMES, TEST_NAMES = ('train', 'seg_train'), ('test', 'val', 'seg_test')


def split_folder(root, names):
    """The first of the folders `names` under root (Kaggle's doubled seg_train/seg_train too), or None."""
    for name in names:
        d = Path(root) / name
        if d.is_dir() and doubled(d):
            d = d / name
        if d.is_dir():
            return d
    return None


def doubled(split_dir):
    """Whether a split folder is Kaggle's doubled one (seg_train/seg_train/<class>/), known by what it holds:
    one folder of its own name, holding folders and no image. A class named like its split (train/train/ beside
    train/bus/, or a one-class train/train/*.jpg) is a class."""
    inner = split_dir / split_dir.name
    return class_folders(split_dir) == [split_dir.name] and bool(class_folders(inner)) and \
        not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in inner.iterdir())


def class_folders(split_dir):
    return sorted(p.name for p in Path(split_dir).iterdir() if p.is_dir() and not p.name.startswith('.'))


def find_folder_splits(root):
    """(train dir, test dir) of an ImageFolder tree, or None when `root` is not one.

    Accepts train/ with test/ or val/, and Kaggle Intel's seg_train/seg_train, seg_test/seg_test.
    """
    root = Path(root)
    train = split_folder(root, TRAIN_NAMES)
    if train is None or not any(p.is_dir() for p in train.iterdir()):
        return None
    test = split_folder(root, TEST_NAMES)
    if test is None:
        raise DataError(f"{root} has {train.name}/ but no test/, val/ or seg_test/ folder beside it: "
                        "add one with the same class folders")
    return train, test


def list_images(split_dir, classes=None):
    """Sorted (path, label) pairs, the class names, and the non-image files that were left out.

    With classes=None (the train split) the class folders define the classes and each must hold
    images; a test split may lack a class but may not add one. An image name that is a broken
    symbolic link (a git-annex or DVC data set before its contents are fetched) stops: leaving it
    out would train on part of the data set.
    """
    split_dir = Path(split_dir)
    found = class_folders(split_dir)
    unknown = sorted(set(found) - set(classes or found))
    if unknown:
        raise DataError(f"{split_dir} has class folders that train/ lacks: {', '.join(unknown[:5])}: remove them, "
                        "or add them to train/ too")
    files, others, broken = [], [], []
    for label, name in enumerate(classes or found):
        d = split_dir / name
        entries = sorted((e for e in os.scandir(d) if not e.name.startswith('.')), key=lambda e: e.name) \
            if d.is_dir() else []
        images = []
        for e in entries:  # a plain file is known from the listing; a link is followed (False: to nothing, or a loop)
            is_file = e.is_file(follow_symlinks=False) or (e.is_symlink() and os.path.isfile(e.path))
            if not e.name.lower().endswith(IMAGE_EXTENSIONS) or not (is_file or e.is_symlink()):
                others.append(d / e.name)  # a folder named x.jpg is no image either
            elif is_file:
                images.append(d / e.name)
            else:
                broken.append(d / e.name)
        if not images and classes is None and not broken:
            raise DataError(f"class folder {d} has no images ({', '.join(IMAGE_EXTENSIONS)}): "
                            "add some or remove the folder")
        files += [(p, label) for p in images]
    if broken:
        more = f" (and {len(broken) - 1} more under {split_dir})" if broken[1:] else ''
        raise DataError(f"{broken_link(broken[0])}{more}: fetch the data set's contents (git annex get, dvc pull) "
                        "or delete the broken links")
    if not files:
        raise DataError(f"{split_dir} holds no images: put them in {split_dir}/<class>/, one folder per class"
                        + (" of train/" if classes else ""))
    return files, classes or found, others


def broken_link(path):
    """A symbolic link that is no file, in words: where it points, or that it is a loop."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path} is a symbolic link loop"
    return f"{path} is a symbolic link to {os.readlink(path)}, which does not exist"


MIN_IMAGE_SIZE = 8  # what --image-size takes: the CIFAR nets halve a side twice, and a 1 px image trains to nan


def guess_image_size(train_dir, files):
    """The training size for folder data: the images' own size up to 64 px (CIFAR-like), else 224."""
    from PIL import Image  # reads the headers alone, and loads in a blink (torchvision takes ~2 s)
    sides = []
    for path, _ in files[:: max(1, len(files) // 16)][:16]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception as e:
            raise DataError(f"cannot decode image {path} ({e}): delete or replace the file") from None
    sides.sort()
    side = sides[len(sides) // 2]
    if side < MIN_IMAGE_SIZE:
        raise DataError(f"the images in {train_dir} are {side} px (the median shorter side): too small for the nets "
                        f"here: give --image-size {MIN_IMAGE_SIZE} or more to enlarge them, or larger images")
    return side if side <= augment.PAD_CROP_MAX else 224


# ---------------------------------------------------------------- the source, and its fingerprint

@dataclass
class Source:
    """Where the images come from, found once: the data set, its folders, the images' size."""
    path: str
    dataset: str          # cifar10, cifar100 or folder
    splits: tuple         # (train dir, test dir) of a folder tree; None for CIFAR
    image_size: int       # the training size: 32 for CIFAR, the folder images' own size up to 64 px, else 224

    @functools.cached_property
    def listing(self):
        """A folder tree's ((train files, classes, non-images), (test files, classes, non-images)), listed once."""
        train = list_images(self.splits[0])
        return train, list_images(self.splits[1], train[1])


def find_source(path, dataset=None, image_size=None):
    """The Source behind --data, --dataset and --image-size (None: guessed from the files)."""
    if Path(path).is_file():
        raise DataError(f"--data {path} is a file: give a folder (CIFAR is downloaded into it; or an ImageFolder "
                        "tree with train/<class>/ and test/<class>/)")
    splits = find_folder_splits(path) if Path(path).is_dir() else None
    if dataset is None and splits is None and holds_images(path):  # not a folder to download CIFAR into
        raise DataError(f"--data {path} holds images but no train/ and test/ folders: point --data at the folder "
                        "that holds train/<class>/ and test/<class>/ (or seg_train/ and seg_test/)")
    dataset = dataset or ('folder' if splits else 'cifar10')
    if dataset != 'folder':
        if image_size not in (None, 32):
            raise DataError(f"--image-size {image_size}: {dataset} images are 32 px; the flag is for folder data")
        return Source(str(path), dataset, None, 32)
    if not Path(path).is_dir():
        raise DataError(f"--data {path}: no such folder; point it at an ImageFolder tree (train/<class>/*.jpg)")
    if splits is None:
        raise DataError(f"--data {path} is not an ImageFolder tree: expected train/<class>/<images> (or Kaggle "
                        "Intel's seg_train/seg_train/<class>/) beside test/ or val/")
    source = Source(str(path), dataset, splits, image_size)
    (train, classes, _), _ = source.listing  # listed here, where a problem stops in one line, and once
    if len(classes) == 1:
        raise DataError(f"{splits[0]} holds one class folder ({classes[0]}): with one class there is nothing to "
                        "classify: add a folder per class")
    source.image_size = image_size or guess_image_size(splits[0], train)
    return source


CIFAR_SIZES = {'cifar10': (10, 50_000, 10_000), 'cifar100': (100, 50_000, 10_000)}  # classes, train, test


def fingerprint(source, val_split=0.0, subset=None, test_subset=None):
    """What identifies the data as the loop sees it: the data set, its classes, how many images of
    each split it uses (after --val-split, --subset, --test-subset), the training size, and a digest
    of the files. No path and no time: the same files in another folder give the same fingerprint."""
    if source.dataset == 'folder':
        (train, classes, _), (test, _, _) = source.listing
        classes, n_train, n_test = len(classes), len(train), len(test)
    else:
        classes, n_train, n_test = CIFAR_SIZES[source.dataset]
    n_val = round(n_train * val_split)  # as fixed_split holds them out
    return {'dataset': source.dataset, 'classes': classes, 'train': min(n_train - n_val, subset or n_train),
            'val': n_val, 'test': min(n_test, test_subset or n_test), 'val_split': val_split,
            'image_size': source.image_size, 'digest': files_digest(source)}


def files_digest(source):
    """A folder tree: a digest of each image's split, name under it, label and size in bytes (cheap: no
    image is read). CIFAR: of the checksums of the files, which torchvision checks when it loads them."""
    digest = hashlib.sha1(source.dataset.encode())
    if source.dataset == 'folder':
        for split_dir, (files, _, _) in zip(source.splits, source.listing):
            for path, label in files:
                digest.update(f"{split_dir.name}/{path.relative_to(split_dir)}|{label}|{path.stat().st_size}\n".encode())
    else:
        import torchvision
        cls = torchvision.datasets.CIFAR10 if source.dataset == 'cifar10' else torchvision.datasets.CIFAR100
        for name, md5 in cls.train_list + cls.test_list:
            digest.update(f"{name}|{md5}\n".encode())
    return digest.hexdigest()[:16]


def holds_images(path, depth=2):
    """Whether a folder holds images, itself or in folders up to `depth` levels below it (a class folder, a
    split folder, a tree whose splits have other names than train/ and test/)."""
    try:
        entries = list(Path(path).iterdir()) if Path(path).is_dir() else []
    except OSError:  # a folder this user cannot read: none of its images could be trained on either
        return False
    return any(p.suffix.lower() in IMAGE_EXTENSIONS or (depth and p.is_dir() and holds_images(p, depth - 1))
               for p in entries)
