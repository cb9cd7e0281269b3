"""Make a folder data set of larger images from a small one, to exercise the 224-px path
(random-resized-crop, centre-crop test, ImageNet-style nets) without downloading one.

Takes the first N images of each class of an ImageFolder tree (train/ and test/), resizes each
to S x S and writes it as a JPEG into the same layout:

    python benchmarks/upscale.py /tmp/cifar10 /tmp/cifar10-256 --per-class 200 --size 256

The images are blurry upscales: this is for timing and for running the code path, not for
accuracy figures.
"""
import argparse
import sys
from pathlib import Path

from torchvision.io import write_jpeg
from torchvision.transforms.v2 import functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help='an ImageFolder tree with train/ and test/ (or val/)')
    parser.add_argument('dest', help='where to write the larger copy')
    parser.add_argument('--per-class', type=int, default=200, help='training images per class (default: %(default)s)')
    parser.add_argument('--test-per-class', type=int, help='test images per class (default: a quarter of --per-class)')
    parser.add_argument('--size', type=int, default=256, help='side of the written images in px (default: %(default)s)')
    args = parser.parse_args(argv)
    splits = data.find_folder_splits(args.source)
    if splits is None:
        raise SystemExit(f"error: {args.source} is not an ImageFolder tree with train/ and test/")
    counts = (args.per_class, args.test_per_class or max(1, args.per_class // 4))
    written = 0
    for split_dir, name, per_class in zip(splits, ('train', 'test'), counts):
        files, classes, _ = data.list_images(split_dir)
        taken = {}
        for path, label in files:
            if taken.get(label, 0) >= per_class:
                continue
            taken[label] = taken.get(label, 0) + 1
            image = TF.resize(data.decode(path, 0, None), [args.size, args.size], antialias=True)
            out = Path(args.dest) / name / classes[label] / f"{path.stem}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            write_jpeg(image, str(out), quality=90)
            written += 1
    print(f"wrote {written} images of {args.size} px to {args.dest}")


if __name__ == '__main__':
    main()
