"""Evaluate a trained model.pt: test accuracy on a data set, or predictions for unlabelled images.

    python evaluate.py runs/baseline-resnet20-cifar10-s0/model.pt --data data
    python evaluate.py model.pt --data intel --predict intel/seg_pred/seg_pred --csv predictions.csv

model.pt holds the arch and its constructor switches, the weights, the class names and the
preprocessing (image size, normalisation), so no training flag is needed.
"""
import argparse
import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

import common
import augment
from support import archive, datasets, sources
from support.device import parse_device
from support.flags import Parser


def load_model(path, device, ema=False):
    """The net of a model.pt, and the model.pt; ema=True: with the weights of its EMA average (ema.py)."""
    saved = archive.load_model_file(path)
    if ema:
        prefix = 'ema.module.'
        saved = dict(saved, state_dict={k[len(prefix):]: v for k, v in saved['extra'].items() if k.startswith(prefix)})
        if not saved['state_dict']:
            common.fail(f"{path} holds no EMA weights: --ema is for runs of ema.py")
    try:
        net = archive.build_from_file(saved)
    except (KeyError, RuntimeError, ValueError) as e:
        common.fail(f"{path} is not a model.pt of this repo ({str(e).splitlines()[0]}): pass a run's model.pt")
    return net.to(device).eval(), saved


@torch.no_grad()
def predict(net, saved, image_dir, batch_size, device):
    """(file, class, probability) for every image under image_dir."""
    if not Path(image_dir).exists():
        common.fail(f"--predict {image_dir} does not exist: give the folder of images to label")
    if not Path(image_dir).is_dir():
        common.fail(f"--predict {image_dir} is a file: give the folder that holds the images to label")
    files = sorted(p for p in Path(image_dir).rglob('*') if p.suffix.lower() in sources.IMAGE_EXTENSIONS)
    if not files:
        common.fail(f"--predict {image_dir}: no images ({', '.join(sources.IMAGE_EXTENSIONS)}) in it")
    mean, std = (torch.tensor(saved[k], device=device).view(1, 3, 1, 1) for k in ('mean', 'std'))
    square = saved['image_size'] <= augment.PAD_CROP_MAX
    size, load_size = saved['test_image_size'], saved['test_load_size']
    rows = []
    for i in range(0, len(files), batch_size):
        chunk = files[i:i + batch_size]
        try:
            images = torch.stack([datasets.decode(p, load_size, square) for p in chunk]).to(device)
        except datasets.DataError as e:
            common.fail(str(e))
        probs = net(augment.normalize(augment.test_view(images, size, load_size), mean, std)).softmax(1)
        p, k = probs.max(1)
        rows += [(str(f.relative_to(image_dir)), saved['classes'][c], round(q, 4))
                 for f, c, q in zip(chunk, k.tolist(), p.tolist())]
    return rows


def check_csv(path):
    """Stop before predicting where --csv cannot be written: a folder, or in a folder that is not there."""
    path = Path(path)
    if path.is_dir():
        common.fail(f"--csv {path} is a folder: give a file, e.g. --csv {path / 'predictions.csv'}")
    if not path.parent.is_dir():
        common.fail(f"--csv {path}: there is no folder {path.parent}: make it first, or give a file in a folder "
                    "that exists")


def main(argv=None):
    parser = Parser(prog='evaluate.py', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help="a run's model.pt")
    parser.add_argument('--data', default='data', help='data set to test on, as for training (default: %(default)s)')
    parser.add_argument('--dataset', choices=('cifar10', 'cifar100', 'folder'), help='default: as the model was trained')
    parser.add_argument('--predict', metavar='DIR', help='write predictions for the images under DIR instead')
    parser.add_argument('--ema', action='store_true', help='use the EMA weights of a run of ema.py')
    parser.add_argument('--csv', default='predictions.csv', help='where --predict writes (default: %(default)s)')
    parser.add_argument('--batch-size', type=common.at_least(1), default=256, help='(default: %(default)s)')
    parser.add_argument('--device', default='auto', help='auto (cuda, then mps, else cpu), cpu, cuda, mps')
    parser.add_argument('--cache-dir', default=datasets.DEFAULT_CACHE, help='as for training (default: %(default)s)')
    args = parser.parse_args(argv)
    device = parse_device(args.device)
    net, saved = load_model(args.model, device, args.ema)

    if args.predict:
        check_csv(args.csv)  # before the predictions, not after them
        rows = predict(net, saved, args.predict, args.batch_size, device)
        try:
            with open(args.csv, 'w', newline='') as f:
                csv.writer(f).writerows([('file', 'class', 'probability')] + rows)
        except OSError as e:  # a full disk
            common.fail(f"--csv {args.csv}: cannot write the {len(rows)} predictions ({e.strerror}): free space, "
                        "or give another file")
        print(f"wrote {len(rows)} predictions to {args.csv}")
        return rows

    try:  # the test split alone: a tree that holds only test/ will do, and train/ is never decoded
        data = datasets.load_test(args.data, args.dataset or saved['dataset'], saved['image_size'],
                                     saved['test_image_size'], device, print, cache_dir=args.cache_dir)
    except datasets.DataError as e:
        common.fail(str(e))
    if list(data.classes) != list(saved['classes']):
        missing = sorted(set(saved['classes']) - set(data.classes)) or ['none']
        extra = sorted(set(data.classes) - set(saved['classes'])) or ['none']
        common.fail(f"{args.data} has other classes than the model was trained on (missing: {', '.join(missing[:5])}; "
                    f"new: {', '.join(extra[:5])}; or another order): test on the data set it was trained for")
    data.mean, data.std = (torch.tensor(saved[k], device=device).view(1, 3, 1, 1) for k in ('mean', 'std'))
    run = SimpleNamespace(data=data, rank=0, world=1, device=device, amp_dtype=None,
                          args=SimpleNamespace(batch_size=args.batch_size, channels_last=False))
    metrics = common.evaluate(run, data.test, data.test_index, 'test', net=net)
    if len(data.classes) <= 5:  # top-5 of 5 classes or fewer is always 100%: left out, as training leaves it out
        del metrics['test_top5']
    top5 = f"  top-5 {metrics['test_top5']:.2f}%" if 'test_top5' in metrics else ''
    print(f"test loss {metrics['test_loss']:.4f}{top5}")
    print(f"test accuracy: {metrics['test_acc']:.2f}%")
    return metrics


if __name__ == '__main__':
    main(sys.argv[1:])
