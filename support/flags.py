"""The command line's flags: the values each takes, the flags every script shares, which of them are
runtime-only, and what follows from them once the data is known: the defaults it decides and the run
folder's name. The tricks' flags and how tricks compose: tricks.py.
"""
import argparse
import hashlib
import math
import os
import re
from pathlib import Path

import augment
from support import datasets, sources
import models


def fail(message):
    """Stop the run with one line naming the cause and the fix."""
    raise SystemExit(f"error: {message}")


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------- flag values

def at_least(minimum, kind=int):
    def parse(text):
        value = kind(text)
        if not math.isfinite(value) or value < minimum:
            what = 'a finite number ' if kind is float else ''
            raise argparse.ArgumentTypeError(f"must be {what}>= {minimum}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def between(low, high, low_open=False, high_open=False, why=''):
    """A float in the interval from low to high; `open` ends exclude their bound; `why` follows the range in
    the error (where the bound comes from)."""
    def parse(text):
        value = float(text)
        if not (low < value if low_open else low <= value) or not (value < high if high_open else value <= high):
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}"
                                             f"{')' if high_open else ']'}{why}, got {text}")
        return value
    parse.__name__ = 'float'
    return parse


def whole_between(low, high, why=''):
    """A whole number in low .. high; `why` follows the range in the error."""
    def parse(text):
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low} .. {high}{why}, got {text}")
        return value
    parse.__name__ = 'int'  # argparse names it in "invalid int value: 'x'"
    return parse


def usable_cpus():
    """The CPUs this process may run on: its affinity mask where the system has one (a container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


# torch's Beta sampler clamps each of its two gamma draws at float32's smallest normal number (1.2e-38) and
# returns g1 / (g1 + g2): below alpha 0.01 both are clamped for a share of the draws, which come out exactly
# 0.5 where Beta(alpha, alpha) lies near 0 or 1 (1 in 17 draws at 0.002, none in 200,000 at 0.01); below 1e-45
# alpha is 0 in float32 and it raises. Above 1e38 it is no float32 number (3.4e38 the largest) and every draw
# comes out 1.2e-38, not 0.5.
beta_alpha = between(0.01, 1e38, why=" (torch's Beta sampler draws wrong values outside it)")


fraction = between(0, 1, high_open=True)                       # [0, 1): momentum, val split, smoothing
positive_fraction = between(0, 1, low_open=True, high_open=True)
unit_interval = between(0, 1)                                  # [0, 1]: a probability, a weight


def seed(text):
    """A seed: the loop draws epoch orders from seed x 100003 + epoch, which must fit in int64."""
    value = int(text)
    if not 0 <= value < 2 ** 31:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**31 - 1, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)  # --weight-d is not --weight-decay: flags are checked by name

    def error(self, message):  # one line, not the whole usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_loop_flags(flags, recipe):
    """The flags every script shares; the baseline's hyper-parameters default to `recipe` (common.RECIPE)."""
    a = flags.add_argument
    a('--data', default='data', metavar='DIR',
      help='CIFAR is downloaded here if missing; or an ImageFolder tree with train/ and test/ (or val/)')
    a('--dataset', choices=('cifar10', 'cifar100', 'folder'),
      help='default: folder when DIR holds class folders under train/ (or seg_train/), else cifar10')
    a('--arch', choices=models.ARCHS, default=recipe['arch'],
      help='default: resnet20 for images up to 64 px, resnet18 above')
    a('--epochs', type=at_least(1), default=recipe['epochs'], help='training epochs (default: %(default)s)')
    a('--batch-size', type=at_least(1), default=recipe['batch_size'],
      help='global batch size, split across processes under torchrun (default: %(default)s)')
    a('--lr', type=positive_float, default=recipe['lr'], help='peak learning rate (default: %(default)s)')
    a('--momentum', type=fraction, default=recipe['momentum'], help='SGD momentum (default: %(default)s)')
    a('--nesterov', action=argparse.BooleanOptionalAction, default=recipe['nesterov'],
      help='Nesterov momentum (default: %(default)s)')
    a('--weight-decay', type=at_least(0.0, float), default=recipe['weight_decay'],
      help='weight decay (default: %(default)s)')
    a('--milestones', type=positive_fraction, nargs='*', default=recipe['milestones'], metavar='F',
      help='step decay: multiply the lr by 0.1 at these fractions of the steps (after any warmup; '
           f"default: {' '.join(map(str, recipe['milestones']))})")
    a('--seed', type=seed, default=0, help='random seed, 0 .. 2**31 - 1 (default: %(default)s)')
    a('--device', default='auto', help='auto (cuda, then mps, else cpu), cpu, cuda, cuda:1, mps')
    cpus = usable_cpus()  # more threads than CPUs: 135 s a step at 1,000 on 2 cores; a crash at 100,000
    a('--threads', type=whole_between(1, cpus, ' (the CPUs this process may use)'),
      help=f'CPU threads for PyTorch, 1 .. {cpus} here (default: all cores)')
    a('--amp', nargs='?', const='auto', choices=('auto', 'fp16', 'bf16'),
      help='mixed precision; auto: bf16 where the device has it (CUDA from Ampere on, a CPU with AVX512-BF16 or '
           'AMX), else fp16 + grad scaler on CUDA; fp16 or bf16 to choose')
    a('--channels-last', action=argparse.BooleanOptionalAction, default=True,
      help='channels_last memory format (default: on; faster for these convnets, see docs/speed.md)')
    a('--compile', nargs='?', const='default', choices=('default', 'reduce-overhead', 'max-autotune'),
      help="torch.compile the model, in this mode (default: torch.compile's own; reduce-overhead uses CUDA graphs)")
    a('--cuda-graph', action=argparse.BooleanOptionalAction,
      help='on a GPU, run the training step as one CUDA graph (default: on where it applies; never with --compile)')
    a('--subset', type=at_least(1), metavar='N', help='train on N images only, for quick runs')
    a('--test-subset', type=at_least(1), metavar='N', help='test on N images only, for quick runs')
    a('--val-split', type=fraction, default=0.0, metavar='F',
      help='hold out this fraction of train for model selection (val_acc); the same images in every run')
    a('--image-size', type=at_least(8), metavar='S',
      help='folder data: training size in px (default: the images own size up to 64 px, else 224)')
    a('--color-jitter', type=fraction, default=recipe['color_jitter'], metavar='S',
      help='scale brightness, contrast, saturation by U(1-S, 1+S) per image (the paper: 0.4; default: %(default)s)')
    a('--lighting', type=between(0, 1, why=" (up to 10 x the paper's 0.1)"),
      default=recipe['lighting'], metavar='STD',
      help="AlexNet's PCA lighting noise with this std, 0 .. 1 (the paper: 0.1; default: %(default)s)")
    a('--test-scale', type=positive_float, default=1.0, metavar='F',
      help='folder data: test at F x the training size (FixRes; default: %(default)s)')
    a('--init', choices=('default', 'xavier'), default=recipe['init'],
      help="weight init: the nets' own (Kaiming normal for the ResNets) or xavier, the paper's baseline "
           '(Xavier uniform for conv and linear weights)')
    a('--weights', metavar='NAME|PATH', help='start from these weights: a torchvision name such as '
      'IMAGENET1K_V1 (downloads) or a state-dict file (offline)')
    a('--out', metavar='DIR', help='run directory (default: runs/<script>[+<with>...][-<flag>=<value>...]-<arch>-'
      '<data>-s<seed>, naming each flag given another value than its default)')
    a('--resume', action='store_true', help='continue from DIR/last.pt; skip a finished run')
    a('--force', action='store_true', help='overwrite a finished or unfinished run in DIR')
    a('--cache-dir', default=datasets.DEFAULT_CACHE, metavar='DIR',
      help='where decoded folder data sets are cached (default: %(default)s)')
    a('--stream', action='store_true', help='stream folder data through DataLoader workers even if it fits in memory')
    a('--tensorboard', action='store_true', help='also log the per-epoch figures for TensorBoard, in DIR/tensorboard')
    a('--summary', action='store_true', help="print each layer's output shape and parameter count before training")
    a('--with', dest='with_', nargs='+', action='extend', default=[], metavar='NAME|PATH',
      help='also switch on the tricks of NAME.py beside common.py, or of the file PATH (a trick of your own)')


# flags that change how a run is carried out, not what it computes: a finished run with other values is the same run
RUNTIME_ONLY_FLAGS = {'data', 'device', 'threads', 'compile', 'out', 'resume', 'force', 'cache_dir', 'stream',
                      'tensorboard', 'summary', 'with_', 'channels_last',
                      'cuda_graph'}
NAMED_ELSEWHERE = {'arch', 'dataset', 'seed', 'script'}  # the end of a default run folder's name


def changed_flags(args, parser):
    """The flags that --resume compares (all but the runtime-only ones) whose value is not the script's default,
    as 'name=value' words in the order of their names: what names a default run folder."""
    words = []
    for dest in sorted(vars(args)):
        value = describe(getattr(args, dest))
        if dest in RUNTIME_ONLY_FLAGS | NAMED_ELSEWHERE or value == describe(parser.get_default(dest)):
            continue
        words.append(f"{dest.replace('_', '-')}={folder_word(value)}")
    return words


def fill_in_defaults(args, changed):
    """Find the data set behind the flags, and fill in the defaults that follow from it: --dataset,
    --image-size, --arch (resnet20 up to 64 px, else resnet18) and --out (named with the `changed` flags,
    see run_dir). Returns the sources.Source."""
    try:
        source = sources.find_source(args.data, args.dataset, args.image_size)
    except sources.DataError as e:
        fail(str(e))
    args.dataset, args.image_size = source.dataset, source.image_size
    if args.test_scale != 1 and args.image_size <= augment.PAD_CROP_MAX:
        fail(f"--test-scale {args.test_scale}: images of {args.image_size} px are tested whole, at their own size; "
             f"testing at another size needs folder data above {augment.PAD_CROP_MAX} px")
    args.arch = args.arch or ('resnet20' if args.image_size <= augment.PAD_CROP_MAX else 'resnet18')
    if args.compile and args.cuda_graph:
        fail(f"--cuda-graph and --compile {args.compile}: the graph captures eager kernels; torch.compile's own "
             "CUDA graphs are --compile reduce-overhead: drop one of them")
    args.out = str(run_dir(args, changed))
    return source


def run_dir(args, changed):
    """--out, or runs/ and a name for the command: the script and its --with tricks, the flags it changes
    from their defaults, the arch, the data and the seed. One command, one folder: a sweep over a flag
    needs no --out, and the same command again finds its own run (--resume)."""
    if args.out:
        return Path(args.out)
    data = args.dataset if args.dataset != 'folder' else Path(args.data).resolve().name
    name = '-'.join(['+'.join([args.script] + [folder_word(Path(w).stem) for w in args.with_]), *changed,
                     args.arch, folder_word(data), f's{args.seed}'])
    if len(name) > 100:  # file systems take 255 bytes; a long name keeps its start and a digest of the whole
        name = f"{name[:91]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return Path('runs') / name


def folder_word(value):
    """A flag's value as a part of a folder name: a path by its file name and a short digest of where it is
    (runs/a/model.pt and runs/b/model.pt are two teachers), lists joined by commas, no character a shell or a
    file system would take otherwise."""
    if isinstance(value, list):
        return ','.join(map(folder_word, value))
    text = str(value)
    if isinstance(value, str) and '/' in value:
        text = f"{Path(value).name}.{hashlib.sha1(str(Path(value).resolve()).encode()).hexdigest()[:6]}"
    return re.sub(r'[^A-Za-z0-9.,+=_-]', '_', text)


def describe(value):
    """A value as result.json and error messages show it."""
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
