"""Make a folder data set of larger images from a small one, to exercise the 224-px path
(random-resized-crop, centre-crop test, ImageNet-style nets) without downloading one.

Takes the first N images of each class of an ImageFolder tree (train/ and test/) or of
torchvision's CIFAR-10 folder, resizes each to S x S and writes it as a JPEG into an ImageFolder
tree:

    python tools/upscale.py DIR DIR-256 --per-class 200 --size 256

The images are blurry upscales: this is for timing and for running the code path, not for
accuracy figures.
"""
import argparse
import sys
from pathlib import Path

from torchvision.io import write_jpeg
from torchvision.transforms.v2 import functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import datasets, sources  # noqa: E402
from support.flags import at_least  # noqa: E402


def images_of(source):
    """{'train': [(class name, file stem, a function giving the uint8 3 x H x W image)], 'test': [...]}."""
    splits = sources.find_folder_splits(source)
    if splits is None:  # torchvision's CIFAR-10 (downloaded there if missing)
        train_x, train_y, test_x, test_y, classes = datasets.load_cifar('cifar10', source)
        return {split: [(classes[y], str(i), lambda x=x: x) for i, (x, y) in enumerate(zip(images, labels.tolist()))]
                for split, images, labels in (('train', train_x, train_y), ('test', test_x, test_y))}
    out = {}
    for split_dir, name in zip(splits, ('train', 'test')):
        files, classes, _ = sources.list_images(split_dir)
        out[name] = [(classes[label], path.stem, lambda path=path: datasets.decode(path, 0, None)) for path, label in files]
    return out


def apart(source, dest):
    """Stop where dest is the source folder, inside it or holds it: the copy would overwrite the source's images
    or be read back as more of them."""
    s, d = Path(source).resolve(), Path(dest).resolve()
    how = 'is' if s == d else 'is inside' if d.is_relative_to(s) else 'holds' if s.is_relative_to(d) else None
    if how:
        raise SystemExit(f"error: the copy's folder {dest} {how} the source {source}: the copy would overwrite its "
                         "images; give a folder outside it")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.error = lambda message: parser.exit(2, f"upscale.py: error: {message} (see --help)\n")  # one line
    parser.add_argument('source', help="an ImageFolder tree with train/ and test/, or torchvision's CIFAR-10 folder")
    parser.add_argument('dest', help='where to write the larger copy')
    parser.add_argument('--per-class', type=at_least(1), default=200,
                        help='training images per class (default: %(default)s)')
    parser.add_argument('--test-per-class', type=at_least(1),
                        help='test images per class (default: a quarter of --per-class)')
    parser.add_argument('--size', type=at_least(1), default=256,
                        help='side of the written images in px (default: %(default)s)')
    args = parser.parse_args(argv)
    apart(args.source, args.dest)
    try:
        splits = images_of(args.source)
    except datasets.DataError as e:
        raise SystemExit(f"error: {e}")
    counts = {'train': args.per_class, 'test': args.test_per_class or max(1, args.per_class // 4)}
    written = 0
    for split, images in splits.items():
        taken = {}
        for label, stem, image in images:  # decoded only when taken
            if taken.get(label, 0) >= counts[split]:
                continue
            taken[label] = taken.get(label, 0) + 1
            out = Path(args.dest) / split / label / f"{stem}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            write_jpeg(TF.resize(image(), [args.size, args.size], antialias=True), str(out), quality=90)
            written += 1
    print(f"wrote {written} images of {args.size} px to {args.dest}")


if __name__ == '__main__':
    main()
