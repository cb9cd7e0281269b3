"""Where the images come from: CIFAR-10/100 through torchvision, or any ImageFolder tree, as uint8
tensors; the fingerprint that ties a run to them.

Small data sets (CIFAR, Kaggle's Intel at its size) are decoded once (a folder tree's into a cache
file), kept in memory as one uint8 tensor (on the GPU when there is one) and augmented a whole
batch at a time on that device (augment.py): no PIL, no worker processes. A data set that does not
fit streams through a DataLoader with workers instead, into the same batched augmentation.

Images are stored at the "load size" (augment.load_size): CIFAR-sized ones as they are, larger ones
with the shorter side resized to 8/7 of the training size and the centre square kept.
"""
import contextlib
import errno
import functools
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

import augment

# torchvision is imported where it is used: importing it takes ~2 s, and a run on cached folder data
# needs none of it

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.webp')  # what torchvision.io decodes
DEFAULT_CACHE = os.path.join(os.path.expanduser(os.environ.get('XDG_CACHE_HOME', '~/.cache')), 'bag-of-tricks')


class DataError(Exception):
    """A problem with the user's data, reported as one line."""


# ---------------------------------------------------------------- CIFAR through torchvision

def load_cifar(name, root, train=True):
    """(train images, train labels, test images, test labels, classes) as uint8 NCHW tensors;
    train=False: the test split alone (evaluate.py), None for the train split's two."""
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == 'cifar10' else torchvision.datasets.CIFAR100
    try:
        sets = [cls(root, train=split, download=True) for split in (True, False)[0 if train else 1:]]
    except Exception as e:  # offline, or a broken download: say where the files go
        archive = Path(root) / os.path.basename(cls.url)
        if archive.is_file() and md5_of(archive) != cls.tgz_md5:  # torchvision tried to download it again
            raise DataError(f"{archive} is damaged: its MD5 checksum is not {cls.tgz_md5} (a download cut short?): "
                            f"delete it and run again, or put an intact copy from {cls.url} there") from None
        raise DataError(f"could not get {name} into {root} ({type(e).__name__}: {e}); offline, put "
                        f"{archive.name} from {cls.url} into {root} and run again") from None
    out = [] if train else [None, None]
    for s in sets:
        out += [torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(s.targets)]
    return (*out, sets[0].classes)


def md5_of(path):
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


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


def decode(path, size, square):
    """One image as uint8 3 x L x L: any mode to RGB, resized (square: stretched) to size.

    square=None keeps the image as it is."""
    import torchvision.io
    from torchvision.transforms.v2 import functional as TF
    try:
        img = torchvision.io.decode_image(torchvision.io.read_file(str(path)), mode=torchvision.io.ImageReadMode.RGB)
    except Exception as e:
        if str(path).lower().endswith('.webp') and not hasattr(torchvision.io, 'decode_webp'):
            raise DataError(f"cannot decode image {path}: WebP needs torchvision 0.20 or later") from None
        raise DataError(f"cannot decode image {path} ({e}): delete or replace the file") from None
    if img.ndim == 4:  # an animated GIF: its first frame
        img = img[0]
    if img.dtype != torch.uint8:  # a 16-bit PNG: scaled to 8 bits (a plain copy would wrap around)
        img = TF.to_dtype(img, torch.uint8, scale=True)
    if square is None:
        return img
    if square:
        return TF.resize(img, [size, size], antialias=True) if img.shape[1:] != (size, size) else img
    return TF.center_crop(TF.resize(img, size, antialias=True), [size, size])


def decode_all(files, size, square):
    images = torch.empty((len(files), 3, size, size), dtype=torch.uint8)

    def fill(i):
        images[i] = decode(files[i][0], size, square)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, range(len(files))))
    return images, torch.tensor([label for _, label in files])


def cache_path(cache_dir, split_dir, files, size):
    """The cache file for these files at this load size: data path + file list + size. The list is what was
    decoded (a split's images, or those a --subset uses): a run on other images of the split reads another file."""
    h = hashlib.sha1(f"{Path(split_dir).resolve()}|{size}".encode())
    for p, label in files:
        st = p.stat()
        h.update(f"{p.name}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return Path(cache_dir) / f"{Path(split_dir).name}-{size}px-{h.hexdigest()[:16]}.pt"


def load_split(split_dir, files, size, square, cache_dir, log):
    """The images `files` of one split as (uint8 N x 3 x L x L, labels), decoded once then cached."""
    path = cache_path(cache_dir, split_dir, files, size) if cache_dir else None
    if path is not None and path.exists():
        try:
            cached = torch.load(path, weights_only=True)
            return cached['images'], cached['labels']
        except Exception as e:  # a cache written by an interrupted run: decode again
            log(f"ignoring unreadable cache {path} ({e})")
    images, labels = decode_all(files, size, square)
    if path is not None:
        tmp = path.with_suffix(f'.tmp{os.getpid()}')
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({'images': images, 'labels': labels}, tmp)
            os.replace(tmp, path)  # atomic: concurrent runs never read half a file
        except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
            raise DataError(f"--cache-dir {cache_dir}: cannot write the decoded images there "
                            f"({str(e).splitlines()[0]}): give a folder you can write to") from None
        finally:  # a full disk (or Ctrl-C) leaves no part of a cache file behind
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        log(f"cached {len(files)} decoded images in {path}")
    return images, labels


class FolderStream(torch.utils.data.Dataset):
    """The streaming path: decodes each image on access, in DataLoader workers."""

    def __init__(self, files, size, square):
        self.files, self.size, self.square = files, size, square

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return decode(self.files[i][0], self.size, self.square), self.files[i][1]


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


# ---------------------------------------------------------------- the two paths

class InMemory:
    """A split as one uint8 tensor on the training device; a batch is one gather."""

    def __init__(self, images, labels, device):
        self.images, self.labels = images.to(device), labels.to(device)
        self.streaming = False

    def __len__(self):
        return len(self.labels)

    def batches(self, batch_index):
        for idx in batch_index:
            idx = idx.to(self.labels.device)
            yield self.images[idx], self.labels[idx]


class Streamed:
    """A split too large for memory: decoded on the fly by DataLoader workers."""

    def __init__(self, files, size, square, device, workers):
        self.dataset = FolderStream(files, size, square)
        self.labels = torch.tensor([label for _, label in files])
        self.device, self.workers = device, workers
        self.streaming = True

    def __len__(self):
        return len(self.labels)

    def batches(self, batch_index):
        # the loader's own generator: it draws a seed for its workers at each pass, and from torch's global
        # generator that would be a draw that mixup's, cutmix's and colour jitter's batches then miss (other
        # numbers than in memory, and a resume across --stream or a memory switch not bit-exact)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[idx.tolist() for idx in batch_index], num_workers=self.workers,
            pin_memory=self.device.type == 'cuda', persistent_workers=False, generator=torch.Generator().manual_seed(0))
        try:
            for images, labels in loader:
                yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        except DataError as e:  # re-raised from a worker with the worker's traceback: keep its one line
            raise DataError(str(e).strip().splitlines()[-1].removeprefix(f'{__name__}.DataError: ')) from None


def fixed_split(n, fraction, subset, test=False):
    """Indices of (kept, held out): a fixed draw (seed 0), so every run of every seed and trick
    trains, selects and tests on the same images."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1 if test else 0))
    n_val = round(n * fraction)
    held, kept = order[:n_val], order[n_val:]
    if subset:
        kept = kept[:subset]
    return kept.sort().values, held.sort().values


def available_memory(device):
    """Bytes free for the data set: on CUDA the GPU's free memory, else the host's."""
    if device.type == 'cuda':
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open('/proc/meminfo') as f:
            info = dict(line.split(':', 1) for line in f)
        return int(info['MemAvailable'].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 1 << 34


# ---------------------------------------------------------------- loading

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


def digest_of(path, dataset=''):
    """files_digest of the data at `path` (run_all.sh asks once per table, then compares the runs' own)."""
    try:
        return files_digest(find_source(path, dataset or None))
    except DataError as e:
        raise SystemExit(f"error: {e}") from None


def holds_images(path, depth=2):
    """Whether a folder holds images, itself or in folders up to `depth` levels below it (a class folder, a
    split folder, a tree whose splits have other names than train/ and test/)."""
    try:
        entries = list(Path(path).iterdir()) if Path(path).is_dir() else []
    except OSError:  # a folder this user cannot read: none of its images could be trained on either
        return False
    return any(p.suffix.lower() in IMAGE_EXTENSIONS or (depth and p.is_dir() and holds_images(p, depth - 1))
               for p in entries)


class Data:
    """A data set as the loop holds it: its splits, which images of each it uses, the sizes at which
    augment.py cuts them, and the per-channel mean and std it normalises them with."""

    def __init__(self, dataset, train, test, classes, image_size, test_image_size, device,
                 val_split=0.0, subset=None, test_subset=None, listed=None):
        self.dataset, self.train, self.test, self.classes = dataset, train, test, classes
        self.image_size, self.load_size = image_size, augment.load_size(image_size)
        self.test_image_size, self.test_load_size = test_image_size, augment.load_size(test_image_size)
        # listed: the numbers of (train, test) images in a folder's listings, where train and test hold only
        # the images the run uses (load decodes no other); None: they hold them all (train None: evaluate.py's)
        n_train, n_test = listed or (0 if train is None else len(train), len(test))
        self.train_index, self.val_index = fixed_split(n_train, val_split, subset)
        self.test_index, _ = fixed_split(n_test, 0, test_subset, test=True)
        if train is not None and not len(self.train_index):
            raise DataError(f"--val-split {val_split} holds out {len(self.val_index)} of the {n_train} training "
                            "images and leaves none to train on: use a smaller split")
        if train is not None and val_split and not len(self.val_index):  # else: no val_acc, and nothing says why
            raise DataError(f"--val-split {val_split} holds out none of the {n_train} training images ({n_train} x "
                            f"{val_split} rounds to 0): give at least {1 / n_train:.2g}, or drop the flag")
        if listed:  # the same images, by their rows in the splits held: those used, in the listings' order
            used = torch.cat([self.train_index, self.val_index]).sort().values
            self.train_index, self.val_index = (torch.searchsorted(used, i) for i in (self.train_index, self.val_index))
            self.test_index = torch.arange(len(self.test_index))
        mean, std = augment.MEAN_STD[dataset]  # the table a batch hook reads its fill from (common.py)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)


def load_test(path, dataset, image_size, test_image_size, device, log, cache_dir=None):
    """evaluate.py's data: the test split alone, as a Data with no train split. A folder tree needs no
    train/ for it; its classes are train/'s class folders where there is one, else test/'s."""
    if dataset in ('cifar10', 'cifar100'):
        _, _, images, labels, classes = load_cifar(dataset, path, train=False)
        log(f"data: {dataset} from {path}, {len(labels)} test images, 32 px, in memory on {device}")
        return Data(dataset, None, InMemory(images, labels, device), classes, 32, 32, device)
    if Path(path).is_file():
        raise DataError(f"--data {path} is a file: give the folder that holds test/<class>/")
    test_dir = split_folder(path, TEST_NAMES)
    if test_dir is None:
        raise DataError(f"--data {path} has no test/, val/ or seg_test/ folder to test on: point --data at the "
                        "folder that holds test/<class>/<images>")
    train_dir = split_folder(path, TRAIN_NAMES)
    classes = class_folders(train_dir) if train_dir and class_folders(train_dir) else None
    files, classes, others = list_images(test_dir, classes)
    if others:
        log(f"{test_dir}: left out {len(others)} files that are not images, e.g. {others[0]}")
    size, square = augment.load_size(test_image_size), image_size <= augment.PAD_CROP_MAX
    need, free = len(files) * 3 * size ** 2, available_memory(device)
    if need > free // 2:
        test = Streamed(files, size, square, device, min(8, os.cpu_count() or 1))
    else:
        test = InMemory(*load_split(test_dir, files, size, square, cache_dir or DEFAULT_CACHE, log), device)
    log(f"data: {test_dir}, {len(files)} test images, {len(classes)} classes, stored at {size} px, "
        f"{'streamed' if test.streaming else 'in memory'} on {device}")
    return Data('folder', None, test, classes, image_size, test_image_size, device)


def load(source, test_image_size, device, log, val_split=0.0, subset=None, test_subset=None, cache_dir=None,
         stream=False):
    """The images of `source`, in memory when they fit, streamed when they do not."""
    split_args = dict(val_split=val_split, subset=subset, test_subset=test_subset)
    if source.dataset in ('cifar10', 'cifar100'):
        tr_x, tr_y, te_x, te_y, classes = load_cifar(source.dataset, source.path)
        train, test = InMemory(tr_x, tr_y, device), InMemory(te_x, te_y, device)
        log(f"data: {source.dataset} from {source.path}, {len(train)} train / {len(test)} test images, 32 px, "
            f"in memory on {device}")
        return Data(source.dataset, train, test, classes, 32, 32, device, **split_args)

    splits = source.splits
    (files, classes, others), (test_files, _, test_others) = source.listing
    for split_dir, left_out in zip(splits, (others, test_others)):
        if left_out:
            log(f"{split_dir}: left out {len(left_out)} files that are not images, e.g. {left_out[0]}")
    # only the images the run uses are decoded (--subset, --test-subset): the rows of the listings that Data's
    # fixed splits pick, in order (Data indexes them by row)
    listed = (len(files), len(test_files))
    used = (torch.cat(fixed_split(listed[0], val_split, subset)).sort().values,
            fixed_split(listed[1], 0, test_subset, test=True)[0])
    files = {d: [every[i] for i in rows.tolist()] for d, every, rows in zip(splits, (files, test_files), used)}
    square = source.image_size <= augment.PAD_CROP_MAX
    sizes = {splits[0]: augment.load_size(source.image_size), splits[1]: augment.load_size(test_image_size)}
    need, free = sum(len(files[d]) * 3 * sizes[d] ** 2 for d in splits), available_memory(device)
    n = sum(len(f) for f in files.values())
    if stream or need > free // 2:
        why = "--stream" if stream else f"{need / 2**30:.1f} GiB of images do not fit in half of the " \
            f"{free / 2**30:.1f} GiB free on {device}"
        workers = min(8, os.cpu_count() or 1)
        train, test = (Streamed(files[d], sizes[d], square, device, workers) for d in splits)
        log(f"data: streaming {n} images from {source.path} through a DataLoader with {workers} workers ({why})")
    else:
        train, test = (InMemory(*load_split(d, files[d], sizes[d], square, cache_dir or DEFAULT_CACHE, log), device)
                       for d in splits)
        held = [f"{len(s)}" + (f" of {n}" if len(s) < n else '') for s, n in zip((train, test), listed)]
        log(f"data: {source.path}, {held[0]} train / {held[1]} test images, {len(classes)} classes, "
            f"stored at {sizes[splits[0]]} px, in memory on {device} "
            f"({need / 2**20:.0f} MiB of {free / 2**30:.1f} GiB free)")
    return Data('folder', train, test, classes, source.image_size, test_image_size, device, **split_args,
                listed=listed)
