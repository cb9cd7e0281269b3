"""run_all.sh's check of its data, once, before any run starts: that DATA is a data set the runs can read, and
for CIFAR that its files are there or can be downloaded. Offline without them, each run of a table failed
alike, after trying the download (the smoke table: 17 runs, 81 s, 17 times the same line).

    python tools/check_data.py SCRIPT FLAGS...     (a run of the table, as run_all.sh gives it)

Exit 0 where the runs can get their data, else one line 'error: ...' and exit 1. Only the flags that say where
the data is are read (--data, --dataset, --image-size); the runs check the others. No torchvision import
(seconds): CIFAR's file names are below, as torchvision lays them out.
"""
import argparse
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import sources  # noqa: E402

# data set -> (the folder torchvision extracts, its files, the archive it extracts them from, where that is)
CIFAR_FILES = {
    'cifar10': ('cifar-10-batches-py', [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch'],
                'cifar-10-python.tar.gz', 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'),
    'cifar100': ('cifar-100-python', ['train', 'test'], 'cifar-100-python.tar.gz',
                 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz'),
}


def where_data_is(argv):
    """--data, --dataset and --image-size of a run's flags, as the run reads them (the last one given wins)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    parser.add_argument('--data', default='data')
    parser.add_argument('--dataset')
    parser.add_argument('--image-size', type=int)
    known, _ = parser.parse_known_args(argv)
    return known


def reachable(url, timeout=10):
    """'' where `url` answers, else why not in words (offline: the name does not resolve)."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()  # the headers only: nothing is downloaded
        return ''
    except OSError as e:  # URLError, a timeout, a refused connection
        return str(getattr(e, 'reason', None) or e)


def check(argv):
    """Stop in one line where the run of argv (SCRIPT FLAGS...) could not get its data."""
    flags = where_data_is(argv[1:])
    try:
        source = sources.find_source(flags.data, flags.dataset, flags.image_size)
    except sources.DataError as e:
        raise SystemExit(f"error: DATA={flags.data}: {e}") from None
    if source.dataset not in CIFAR_FILES:
        return
    folder, files, archive, url = CIFAR_FILES[source.dataset]
    root = Path(flags.data)
    if (root / archive).is_file() or all((root / folder / name).is_file() for name in files):
        return  # there (whether intact, each run's load says)
    why = reachable(url)
    if why:
        raise SystemExit(f"error: DATA={flags.data} holds no {source.dataset} ({folder}/ or {archive}), and it "
                         f"cannot be downloaded ({why}): offline, put {archive} from {url} into {root.resolve()}, "
                         "or give DATA a folder that holds it, or an ImageFolder tree")


if __name__ == '__main__':
    check(sys.argv[1:])
