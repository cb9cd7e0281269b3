"""The images as the loop holds them: CIFAR-10/100 through torchvision, or a folder tree's images decoded
once and cached, as uint8 tensors in memory, or streamed where they do not fit; which of them a run
trains, selects and tests on. Where they are, and their fingerprint: sources.py.

Small data sets (CIFAR, Kaggle's Intel at its size) are decoded once (a folder tree's into a cache
file), kept in memory as one uint8 tensor (on the GPU when there is one) and augmented a whole
batch at a time on that device (augment.py): no PIL, no worker processes. A data set that does not
fit streams through a DataLoader with workers instead, into the same batched augmentation.

Images are stored at the "load size" (augment.load_size): CIFAR-sized ones as they are, larger ones
with the shorter side resized to 8/7 of the training size and the centre square kept.
"""
import contextlib
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

import augment
from support.sources import TEST_NAMES, TRAIN_NAMES, DataError, class_folders, list_images, split_folder

# torchvision is imported where it is used: importing it takes ~2 s, and a run on cached folder data
# needs none of it

DEFAULT_CACHE = os.path.join(os.path.expanduser(os.environ.get('XDG_CACHE_HOME', '~/.cache')), 'bag-of-tricks')


# ---------------------------------------------------------------- CIFAR through torchvision

def load_cifar(name, root, train=True):
    """(train images, train labels, test images, test labels, classes) as uint8 NCHW tensors;
    train=False: the test split alone (evaluate.py), None for the train split's two."""
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == 'cifar10' else torchvision.datasets.CIFAR100
    made = not Path(root).exists()
    try:
        sets = [cls(root, train=split, download=True) for split in (True, False)[0 if train else 1:]]
    except Exception as e:  # offline, or a broken download: say where the files go
        if made and Path(root).is_dir() and not any(Path(root).iterdir()):
            Path(root).rmdir()  # made for the download that failed: nothing is left behind
        archive = Path(root) / os.path.basename(cls.url)
        if archive.is_file() and md5_of(archive) != cls.tgz_md5:  # torchvision tried to download it again
            raise DataError(f"{archive} is damaged: its MD5 checksum is not {cls.tgz_md5} (a download cut short?): "
                            f"delete it and run again, or put an intact copy from {cls.url} there") from None
        raise DataError(f"could not get {name} into {root} ({type(e).__name__}: {e}); offline, put "
                        f"{archive.name} from {cls.url} into {root} and run again, or give --data the images as "
                        "an ImageFolder tree") from None
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
            line = str(e).strip().splitlines()[-1]
            raise DataError(line.removeprefix(f'{DataError.__module__}.DataError: ')) from None


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
