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
import data
import models


def load_model(path, device, ema=False):
    """The net of a model.pt; ema=True: the weights of its EMA average (a run of ema.py)."""
    try:
        saved = torch.load(path, map_location='cpu', weights_only=True)
        options = dict(saved['options'])
        model = models.build(saved['arch'], options.pop('num_classes'), **options)
        state = saved['state_dict']
        if ema:
            prefix = 'ema.module.'
            state = {k[len(prefix):]: v for k, v in saved['extra'].items() if k.startswith(prefix)}
            if not state:
                common.fail(f"{path} holds no EMA weights: --ema is for runs of ema.py")
        model.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, ValueError) as e:
        common.fail(f"{path} is not a model.pt of this repo ({str(e).splitlines()[0]}): pass a run's model.pt")
    return model.to(device).eval(), saved


def normalizer(saved, device):
    mean = torch.tensor(saved['mean'], device=device).view(1, 3, 1, 1)
    std = torch.tensor(saved['std'], device=device).view(1, 3, 1, 1)
    return lambda x: (x - mean) / std


@torch.no_grad()
def predict(model, saved, image_dir, batch_size, device):
    """(file, class, probability) for every image under image_dir."""
    files = sorted(p for p in Path(image_dir).rglob('*') if p.suffix.lower() in data.IMAGE_EXTENSIONS)
    if not files:
        common.fail(f"--predict {image_dir}: no images ({', '.join(data.IMAGE_EXTENSIONS)}) in it")
    normalize, square = normalizer(saved, device), saved['image_size'] <= data.PAD_CROP_MAX
    size, load_size = saved['test_image_size'], saved['test_load_size']
    rows = []
    for i in range(0, len(files), batch_size):
        chunk = files[i:i + batch_size]
        try:
            images = torch.stack([data.decode(p, load_size, square) for p in chunk]).to(device)
        except data.DataError as e:
            common.fail(str(e))
        probs = model(normalize(data.test_view(images, size))).softmax(1)
        p, k = probs.max(1)
        rows += [(str(f.relative_to(image_dir)), saved['classes'][c], round(q, 4))
                 for f, c, q in zip(chunk, k.tolist(), p.tolist())]
    return rows


def main(argv=None):
    parser = common.Parser(prog='evaluate.py', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help="a run's model.pt")
    parser.add_argument('--data', default='data', help='data set to test on, as for training (default: %(default)s)')
    parser.add_argument('--dataset', choices=('cifar10', 'cifar100', 'folder'), help='default: as the model was trained')
    parser.add_argument('--predict', metavar='DIR', help='write predictions for the images under DIR instead')
    parser.add_argument('--ema', action='store_true', help='use the EMA weights of a run of ema.py')
    parser.add_argument('--csv', default='predictions.csv', help='where --predict writes (default: %(default)s)')
    parser.add_argument('--batch-size', type=common.at_least(1), default=256)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--cache-dir', default=data.DEFAULT_CACHE)
    args = parser.parse_args(argv)
    device = common.parse_device(args.device)
    model, saved = load_model(args.model, device, args.ema)

    if args.predict:
        rows = predict(model, saved, args.predict, args.batch_size, device)
        with open(args.csv, 'w', newline='') as f:
            csv.writer(f).writerows([('file', 'class', 'probability')] + rows)
        print(f"wrote {len(rows)} predictions to {args.csv}")
        return rows

    flags = SimpleNamespace(dataset=args.dataset or saved['dataset'], data=args.data, image_size=saved['image_size'],
                            test_image_size=saved['test_image_size'], val_split=0.0, subset=None, test_subset=None,
                            cache_dir=args.cache_dir, stream=False)
    try:
        if flags.dataset == 'folder' and data.find_folder_splits(args.data) is None:
            common.fail(f"--data {args.data} is not an ImageFolder tree with train/ and test/")
        dataset = data.load(flags, device, print)
    except data.DataError as e:
        common.fail(str(e))
    if list(dataset.classes) != list(saved['classes']):
        common.fail(f"{args.data} has classes {dataset.classes[:4]}..., the model was trained on "
                    f"{saved['classes'][:4]}...: test on the data set it was trained for")
    run = SimpleNamespace(model=model, data=dataset, rank=0, world=1, device=device, amp_dtype=None,
                          args=SimpleNamespace(batch_size=args.batch_size, channels_last=False))
    dataset.mean, dataset.std = (torch.tensor(saved[k], device=device).view(1, 3, 1, 1) for k in ('mean', 'std'))
    metrics = common.evaluate(run, dataset.test, dataset.test_index, 'test')
    print(f"test loss {metrics['test_loss']:.4f}  top-5 {metrics['test_top5']:.2f}%")
    print(f"test accuracy: {metrics['test_acc']:.2f}%")
    return metrics


if __name__ == '__main__':
    main(sys.argv[1:])
