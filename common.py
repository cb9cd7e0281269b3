"""The one training loop that every script of this repo runs.

Read it top to bottom: the flags, the trick contract, set-up (device, data, model, optimizer),
the step, the epoch, evaluation, and what a run writes. `baseline.py` runs it with nothing
else on; each trick script runs it with its hooks.

The trick contract
------------------
A script is a module; `main(module)` runs the loop with the module's hooks, and
`--with NAME ...` imports NAME.py from this folder and uses its hooks the same way. A trick
defines at most these five plain functions, each optional:

    add_args(parser)                   add the trick's flags; `parser.set_defaults(...)` changes a
                                       default of the loop: a number (cosine sets milestones=[]) or
                                       one of its three replaceable parts: `criterion` (the loss,
                                       called as criterion(logits, targets, images, args)),
                                       `optimizer` (called as optimizer(param_groups, args)) and
                                       `evaluate` (called as evaluate(run, split, index, name))
    model(model, args) -> model        change the freshly built net (before --weights are loaded),
                                       e.g. `models.rebuild(model, variant='D')`
    param_groups(groups, model, args) -> groups
                                       change the optimizer's parameter groups; a group may carry
                                       'lr_scale', a factor on the lr of that group. Called once
                                       the net is final (hooks applied, weights loaded, on its
                                       device): a trick that keeps state beside the net (EMA's
                                       average) attaches it here, so that last.pt saves it
    lr_factor(step, total_steps, args) -> float
                                       a factor on the lr at this step (0-based, per iteration)
    batch(images, targets, args) -> images, targets
                                       change a training batch: float N x 3 x S x S images in
                                       [0, 1] (normalised after the hooks); targets are class ids,
                                       or rows of class probabilities once a trick made them soft

Hooks compose in the order the tricks are named (the script first, then --with's): every
trick's flags are added, model hooks and param_groups hooks are chained, lr factors are
multiplied, batch hooks are chained. Two tricks are incompatible when they define the same
flag, set the same default to different values (unless that flag is given on the command
line, which settles it), or set the same constructor switch of the model to different values:
the run stops with an error naming both.
"""
import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn.functional as F

import data
import models

HERE = Path(__file__).resolve().parent
HOOKS = ('add_args', 'model', 'param_groups', 'lr_factor', 'batch')


def fail(message):
    """Stop the run with one line naming the cause and the fix."""
    raise SystemExit(f"error: {message}")


# ---------------------------------------------------------------- replaceable parts (see evaluate below too)

def cross_entropy(logits, targets, images, args):
    """The baseline loss; class-id or soft (probability) targets alike."""
    return F.cross_entropy(logits, targets)


def sgd(param_groups, args):
    """The baseline optimizer: SGD with momentum, weight decay as L2 in the gradient."""
    return torch.optim.SGD(param_groups, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                           weight_decay=args.weight_decay)


# ---------------------------------------------------------------- flags

def at_least(minimum, kind=int):
    def parse(text):
        value = kind(text)
        if not math.isfinite(value) or value < minimum:
            what = 'a finite number ' if kind is float else ''
            raise argparse.ArgumentTypeError(f"must be {what}>= {minimum}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def fraction(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def positive_fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def unit_interval(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_common_args(parser):
    """The flags every script shares. The baseline recipe's defaults live here and only here."""
    a = parser.add_argument
    a('--data', default='data', metavar='DIR',
      help='CIFAR is downloaded here if missing; or an ImageFolder tree with train/ and test/ (or val/)')
    a('--dataset', choices=('cifar10', 'cifar100', 'folder'),
      help='default: folder when DIR holds class folders under train/ (or seg_train/), else cifar10')
    a('--arch', choices=models.ARCHS, help='default: resnet20 for images up to 64 px, resnet18 above')
    a('--epochs', type=at_least(1), default=30, help='training epochs (default: %(default)s)')
    a('--batch-size', type=at_least(1), default=128,
      help='global batch size, split across processes under torchrun (default: %(default)s)')
    a('--lr', type=positive_float, default=0.1, help='peak learning rate (default: %(default)s, for batch 128)')
    a('--momentum', type=fraction, default=0.9, help='SGD momentum (default: %(default)s)')
    a('--nesterov', action='store_true', help='Nesterov momentum')
    a('--weight-decay', type=at_least(0.0, float), default=5e-4, help='weight decay (default: %(default)s)')
    a('--milestones', type=positive_fraction, nargs='*', default=[0.5, 0.75], metavar='F',
      help='step decay: multiply the lr by 0.1 at these fractions of training (default: 0.5 0.75)')
    a('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    a('--device', default='auto', help='auto (cuda, then mps, else cpu), cpu, cuda, cuda:1, mps')
    a('--threads', type=at_least(1), help='CPU threads for PyTorch (default: all cores)')
    a('--amp', action='store_true', help='mixed precision: fp16 + grad scaler on CUDA, bf16 on a CPU with bf16 units')
    a('--channels-last', action=argparse.BooleanOptionalAction, default=True,
      help='channels_last memory format (default: on; faster for these convnets, see docs/results.md)')
    a('--compile', action='store_true', help='torch.compile the model')
    a('--subset', type=at_least(1), metavar='N', help='train on N images only, for quick runs')
    a('--test-subset', type=at_least(1), metavar='N', help='test on N images only, for quick runs')
    a('--val-split', type=fraction, default=0.0, metavar='F',
      help='hold out this fraction of train for model selection (val_acc); the same images in every run')
    a('--image-size', type=at_least(8), metavar='S',
      help='folder data: training size in px (default: the images own size up to 64 px, else 224)')
    a('--color-jitter', type=fraction, default=0.0, metavar='S',
      help='scale brightness, contrast, saturation by U(1-S, 1+S) per image (the paper: 0.4; default: off)')
    a('--lighting', type=at_least(0.0, float), default=0.0, metavar='STD',
      help="AlexNet's PCA lighting noise with this std (the paper: 0.1; default: off)")
    a('--test-scale', type=positive_float, default=1.0, metavar='F',
      help='folder data: test at F x the training size (FixRes; default: %(default)s)')
    a('--init', choices=('default', 'xavier'), default='default',
      help="weight init: the nets' own (Kaiming normal for the ResNets) or xavier, the paper's baseline "
           '(Xavier uniform for conv and linear weights)')
    a('--weights', metavar='NAME|PATH', help='start from these weights: a torchvision name such as '
      'IMAGENET1K_V1 (downloads) or a state-dict file (offline)')
    a('--out', metavar='DIR', help='run directory (default: runs/<script>[+<with>...]-<arch>-<dataset>-s<seed>)')
    a('--resume', action='store_true', help='continue from DIR/last.pt; skip a finished run')
    a('--force', action='store_true', help='overwrite a finished or unfinished run in DIR')
    a('--cache-dir', default=data.DEFAULT_CACHE, help='where decoded folder data sets are cached (default: %(default)s)')
    a('--stream', action='store_true', help='stream folder data through DataLoader workers even if it fits in memory')
    a('--tensorboard', action='store_true', help='also log the per-epoch figures for TensorBoard, in DIR/tensorboard')
    a('--summary', action='store_true', help="print each layer's output shape and parameter count before training")
    a('--with', dest='with_', nargs='+', default=[], metavar='NAME', help='also switch on the tricks of NAME.py')
    parser.set_defaults(criterion=cross_entropy, optimizer=sgd, evaluate=evaluate)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the whole usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def trick_name(module):
    return Path(module.__file__).stem


def import_tricks(script, argv):
    """The script's module and the --with modules, in that order (those that define hooks)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--with', dest='with_', nargs='+', default=[])
    tricks = [script]
    for name in pre.parse_known_args(argv)[0].with_:
        name = name.removesuffix('.py')
        module = importlib.import_module(name) if (HERE / f'{name}.py').exists() else None
        if not any(hasattr(module, h) for h in HOOKS):
            choices = sorted(p.stem for p in HERE.glob('*.py') if p.stem != 'common' and
                             any(f'def {h}(' in p.read_text() for h in HOOKS))
            what = 'defines no trick (no hook)' if module else 'is not a script here'
            fail(f"--with {name}: {name}.py {what}; choose from {', '.join(choices)}")
        if name in map(trick_name, tricks):
            fail(f"--with {name}: {name} is already on")
        tricks.append(module)
    return [t for t in tricks if any(hasattr(t, h) for h in HOOKS)], trick_name(script)


def parse_args(script, argv=None):
    """Flags of the loop and of every trick; stops when two tricks clash."""
    tricks, script_name = import_tricks(script, argv)
    parser = Parser(prog=f'{script_name}.py', description=script.__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    flag_owner, default_owner, own_flags, clashes = {}, {}, {}, []
    for trick in tricks:
        if not hasattr(trick, 'add_args'):
            continue
        name = trick_name(trick)
        group = parser.add_argument_group(f'{name}.py')
        before = vars(parser.parse_known_args([])[0])
        try:
            trick.add_args(group)
        except argparse.ArgumentError as e:
            other = next((o for flag, o in flag_owner.items() if flag in str(e)), 'common.py')
            fail(f"{other} and {name}.py both define {e.argument_name}: they cannot be combined")
        own_flags[name] = [a.dest for a in group._group_actions]
        flag_owner.update({s: f'{name}.py' for a in group._group_actions for s in a.option_strings})
        after = vars(parser.parse_known_args([])[0])
        for dest, value in after.items():
            if dest in own_flags[name] or before.get(dest, object()) == value:
                continue
            if dest in default_owner and default_owner[dest][1] != value:
                clashes.append((dest, (default_owner[dest][1], value), f"{default_owner[dest][0]}.py and {name}.py "
                                f"both change {dest} ({describe(default_owner[dest][1])} vs {describe(value)})"))
            default_owner[dest] = (name, value)
            own_flags[name].append(dest)
    for dest, values, clash in clashes:
        if not set_by_command_line(parser, argv, dest, values):
            flag = next((s for a in parser._actions if a.dest == dest for s in a.option_strings), None)
            fail(f"{clash}: " + (f"pass {flag} to choose" if flag else "they cannot be combined"))
    args = parser.parse_args(argv)
    args.script = script_name
    settings = {trick_name(t): {d: getattr(args, d) for d in own_flags.get(trick_name(t), [])} for t in tricks}
    return args, tricks, settings


def set_by_command_line(parser, argv, dest, defaults):
    """Whether argv gives `dest` its value: parsed with each of two different defaults, the value is the same."""
    a, b = (getattr(parser.parse_known_args(argv, argparse.Namespace(**{dest: d}))[0], dest) for d in defaults)
    return a == b


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe(value):
    """A value as result.json and error messages show it (functions by name)."""
    if callable(value):
        module = value.__module__
        if module == '__main__':  # a function of the script that was run: named by its file
            module = Path(getattr(sys.modules['__main__'], '__file__', '__main__')).stem
        return f"{module}.{value.__qualname__}"
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


# ---------------------------------------------------------------- set-up

def parse_device(name):
    """--device as a torch.device (auto: cuda, then mps, else cpu); one clear line when it is not here."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError:
        fail(f"--device {name}: not a device; use auto, cpu, cuda, cuda:N or mps")
    if device.type == 'cuda' and not torch.cuda.is_available():
        fail(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        fail(f"--device {name}: this machine has {plural(torch.cuda.device_count(), 'GPU')}, "
             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == 'mps' and not torch.backends.mps.is_available():
        fail(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    if device.type not in ('cpu', 'cuda', 'mps'):
        fail(f"--device {name}: this project runs on cpu, cuda or mps")
    return device


def pick_device(args):
    """(rank, world size, device); under torchrun one process per GPU, or gloo on CPU."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    rank, local_rank = int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0))
    device = parse_device(args.device)
    if device.type == 'cuda' and world > 1:
        device = torch.device('cuda', local_rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    if args.batch_size % world:
        fail(f"--batch-size {args.batch_size} does not split over {world} processes: use a multiple of {world}")
    return rank, world, device


def amp_dtype(args, device, log):
    """fp16 on CUDA, bf16 on a CPU with bf16 units, else None (fp32)."""
    if not args.amp:
        return None
    if device.type == 'cuda':
        return torch.float16
    if device.type == 'cpu' and cpu_has_bf16():
        return torch.bfloat16
    log(f"--amp: no fast half precision on this {device.type} (bf16 needs AVX512-BF16 or AMX); training in fp32")
    return None


def cpu_has_bf16():
    try:
        flags = Path('/proc/cpuinfo').read_text()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags  # measured 2x faster than fp32 on such a CPU


def cpu_model():
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
        return next(line.split(':', 1)[1].strip() for line in lines if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_name(device, world):
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_model()}, {torch.get_num_threads()} threads"
    return f"{device.type}: {name}" + (f" x {world} processes" if world > 1 else '')


def run_dir(args):
    name = '+'.join([args.script] + [w.removesuffix('.py') for w in args.with_])
    return Path(args.out or f"runs/{name}-{args.arch}-{args.dataset}-s{args.seed}")


# flags that change how a run is carried out, not what it computes: a finished run with other values is the same run
HOW_NOT_WHAT = {'data', 'device', 'threads', 'compile', 'out', 'resume', 'force', 'cache_dir', 'stream', 'tensorboard',
                'summary', 'with_', 'channels_last'}


def other_command(made_args, made_tricks, args, settings):
    """How a saved run's flags differ from this run's (HOW_NOT_WHAT aside), in words; '' if they do not."""
    made = {**made_args, 'tricks': made_tricks}
    now = {**describe(vars(args)), 'tricks': describe(settings)}
    differ = sorted(k for k in now if k not in HOW_NOT_WHAT and k in made and made[k] != now[k])
    differ = [k for k in differ if k != 'tricks'] or differ  # a trick's flags say it already
    return ', '.join(f"{k}: {made[k]} there, {now[k]} here" for k in differ[:3])


def check_run_dir(out, args, settings, rank):
    """'done', 'resume' or 'fresh'; refuses to overwrite a run without --resume or --force."""
    finished, unfinished = (out / 'result.json').exists(), (out / 'last.pt').exists()
    if args.force:
        if rank == 0:
            for f in ('result.json', 'last.pt', 'model.pt', 'log.jsonl'):
                (out / f).unlink(missing_ok=True)
        return 'fresh'
    if finished:
        if args.resume:
            text = (out / 'result.json').read_text()
            # functions of a script run as __main__ were recorded under that name before they had their file's
            made = json.loads(text.replace('"__main__.', f'"{json.loads(text)["script"]}.'))
            what = other_command(made['args'], made['tricks'], args, settings)
            if what:
                fail(f"{out} holds a finished run of another command ({what}): --force redoes it, or another --out")
            return 'done'
        fail(f"{out} already holds a finished run: --resume skips it, --force overwrites it, or pick another --out")
    if unfinished and not args.resume:
        fail(f"{out} holds an unfinished run (last.pt): --resume continues it, --force starts over")
    return 'resume' if unfinished else 'fresh'


def build_model(args, tricks, num_classes, log):
    """The net, changed by the tricks' model hooks, then loaded with --weights."""
    try:
        torch.manual_seed(args.seed)
        model = models.build(args.arch, num_classes)
        changed_by = {}
        for trick in tricks:
            if hasattr(trick, 'model'):
                before = dict(getattr(model, 'options', {}))
                torch.manual_seed(args.seed)  # a net rebuilt by a hook draws the same initial weights
                model = trick.model(model, args)
                for key, value in getattr(model, 'options', {}).items():
                    if before.get(key) == value:
                        continue
                    if key in changed_by:
                        fail(f"{changed_by[key]}.py and {trick_name(trick)}.py both change the model's {key}: "
                             "they cannot be combined")
                    changed_by[key] = trick_name(trick)
        if args.init == 'xavier':
            if args.weights:
                fail("--init xavier initialises a net from scratch and --weights would replace it: drop one of them")
            torch.manual_seed(args.seed)
            models.init_xavier(model)
        if args.weights:
            log(models.load_weights(model, args.weights))
    except (ValueError, OSError, RuntimeError) as e:
        fail(f"{e}")
    torch.manual_seed(args.seed + 1)  # what tricks draw while training does not depend on how the net was built
    return model


def prepare(script, argv=None):
    """Flags, tricks, device, and the settings that follow from the data: cheap, loads nothing."""
    args, tricks, settings = parse_args(script, argv)
    rank, world, device = pick_device(args)
    log = (lambda msg: print(msg, flush=True)) if rank == 0 else (lambda msg: None)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.dataset is None:
            args.dataset = 'folder' if data.find_folder_splits(args.data) else 'cifar10'
        if args.dataset == 'folder':
            if not Path(args.data).is_dir():
                fail(f"--data {args.data}: no such folder; point it at an ImageFolder tree (train/<class>/*.jpg)")
            if data.find_folder_splits(args.data) is None:
                fail(f"--data {args.data} is not an ImageFolder tree: expected train/<class>/<images> (or Kaggle "
                     "Intel's seg_train/seg_train/<class>/) beside test/ or val/")
            args.image_size = args.image_size or data.guess_image_size(args.data)
        else:
            if args.image_size not in (None, 32):
                fail(f"--image-size {args.image_size}: {args.dataset} images are 32 px; the flag is for folder data")
            args.image_size = 32
    except data.DataError as e:
        fail(str(e))
    if args.test_scale != 1 and args.image_size <= data.PAD_CROP_MAX:
        fail(f"--test-scale {args.test_scale}: images of {args.image_size} px are tested whole, at their own size; "
             f"testing at another size needs folder data above {data.PAD_CROP_MAX} px")
    args.test_image_size = round(args.image_size * args.test_scale)
    args.arch = args.arch or ('resnet20' if args.image_size <= data.PAD_CROP_MAX else 'resnet18')
    args.out = str(run_dir(args))
    return SimpleNamespace(args=args, tricks=tricks, settings=settings, rank=rank, world=world, device=device,
                           log=log, out=Path(args.out))


def setup(run):
    """Load the data and build model, optimizer and RNG into `run` (from prepare)."""
    args, log, device = run.args, run.log, run.device
    try:
        run.data = data.load(args, device, log)
    except data.DataError as e:
        fail(str(e))
    args.num_classes = len(run.data.classes)

    model = build_model(args, run.tricks, args.num_classes, log)
    run.net = model  # the plain module: what model.pt and last.pt hold
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    run.steps_per_epoch = args.steps_per_epoch = max(1, len(run.data.train_index) // args.batch_size)
    run.total_steps = args.total_steps = run.steps_per_epoch * args.epochs
    run.step = 0

    groups = [{'params': [p for p in model.parameters() if p.requires_grad], 'weight_decay': args.weight_decay}]
    for trick in run.tricks:
        if hasattr(trick, 'param_groups'):
            groups = trick.param_groups(groups, model, args)
    run.optimizer = args.optimizer(groups, args)
    run.amp_dtype = amp_dtype(args, device, log)
    run.scaler = torch.amp.GradScaler(device.type, enabled=run.amp_dtype == torch.float16)
    if run.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == 'cuda' else None)
    if args.compile:
        model = torch.compile(model)
    run.model = model
    run.gen = torch.Generator(device=device).manual_seed(args.seed * 1000 + run.rank)
    return run


# ---------------------------------------------------------------- the step and the epoch

def learning_rate(run, step):
    """Step decay (x0.1 at each milestone), times every trick's lr factor."""
    args = run.args
    lr = args.lr * 0.1 ** sum(step >= round(m * run.total_steps) for m in args.milestones)
    for trick in run.tricks:
        if hasattr(trick, 'lr_factor'):
            lr *= trick.lr_factor(step, run.total_steps, args)
    return lr


def train_batches(run, epoch):
    """This process's share of each global batch, augmented, through the tricks, normalised."""
    d, args = run.data, run.args
    order = d.train_index[torch.randperm(len(d.train_index),
                                         generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch))]
    b = args.batch_size // run.world
    starts = [s * args.batch_size + run.rank * b for s in range(run.steps_per_epoch)]
    for images, labels in d.train.batches(order[s:s + b] for s in starts):
        x = data.train_view(images, d.image_size, run.gen, args.color_jitter, args.lighting)
        targets = labels
        for trick in run.tricks:
            if hasattr(trick, 'batch'):
                x, targets = trick.batch(x, targets, args)
        x = d.normalize(x)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield x, targets


def train_step(run, x, targets):
    """One optimizer step; returns the loss as a tensor on the device (no host sync)."""
    with torch.autocast(run.device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
        logits = run.model(x)
        loss = run.args.criterion(logits.float(), targets, x, run.args)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss.detach()


def train_epoch(run, epoch, max_steps=None):
    """One pass over the training set. Returns [mean loss, first non-finite step or -1] as a tensor.

    Loss and the non-finite flag accumulate on the device and are read once, by the caller.
    """
    run.model.train()
    loss_sum = torch.zeros((), device=run.device)
    first_bad = torch.full((), -1, device=run.device, dtype=torch.long)
    steps, last_print = 0, time.perf_counter()
    for x, targets in train_batches(run, epoch):
        lr = learning_rate(run, run.step)
        for group in run.optimizer.param_groups:
            group['lr'] = lr * group.get('lr_scale', 1.0)
        loss = train_step(run, x, targets)
        loss_sum += loss
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), run.step, first_bad)
        run.step += 1
        steps += 1
        if time.perf_counter() - last_print > 30 and steps < run.steps_per_epoch:
            last_print = time.perf_counter()
            mean, bad = (loss_sum / steps).item(), first_bad.item()  # one sync per ~30 s
            run.log(f"  epoch {epoch + 1} step {steps}/{run.steps_per_epoch}  train_loss {mean:.4f}")
            if bad >= 0 and run.world == 1:
                break
        if max_steps and steps >= max_steps:
            break
    return torch.stack([loss_sum / max(steps, 1), first_bad.float()]), steps


@torch.no_grad()
def evaluate(run, split, index, name, model=None):
    """{name}_loss, {name}_acc and {name}_top5 (percent) on `index` of `split`, sharded over processes."""
    # under DDP the plain net: the wrapper's forward may sync buffers, a collective that would hang
    # when the processes' shards hold different numbers of batches
    model = model or (run.net if run.world > 1 else run.model)
    model.eval()
    d = run.data
    mine = index[run.rank::run.world]
    b = 2 * run.args.batch_size // run.world
    sums = torch.zeros(4, device=run.device)  # loss, top-1, top-5, count
    for images, labels in split.batches(mine[i:i + b] for i in range(0, len(mine), b)):
        x = d.normalize(data.test_view(images, d.test_image_size))
        if run.args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(run.device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), 1).indices
        hits = top == labels[:, None]
        sums += torch.stack([F.cross_entropy(logits, labels, reduction='sum'), hits[:, 0].sum().float(),
                             hits.any(1).sum().float(), torch.tensor(float(len(labels)), device=run.device)])
    if run.world > 1:
        dist.all_reduce(sums)
    loss, top1, top5, n = sums.tolist()
    return {f'{name}_loss': loss / n, f'{name}_acc': 100 * top1 / n, f'{name}_top5': 100 * top5 / n}


# ---------------------------------------------------------------- checkpoints and outputs

def save_atomic(obj, path):
    tmp = path.with_suffix('.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous file whole


def rng_state(run):
    state = {'cpu': torch.get_rng_state(), 'data': run.gen.get_state()}
    if run.device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(run.device)
    if run.world > 1:  # each process augments with its own generator: keep them all
        states = [None] * run.world
        dist.all_gather_object(states, state['data'])
        state['data'] = states
    return state


def set_rng_state(run, state):
    torch.set_rng_state(state['cpu'])
    run.gen.set_state(state['data'][run.rank] if isinstance(state['data'], list) else state['data'])
    if 'cuda' in state and run.device.type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'], run.device)


def checkpoint(run, epoch, best_val, wall_seconds):
    return {'epoch': epoch, 'wall_seconds': wall_seconds, 'model': run.net.state_dict(), 'optimizer': run.optimizer.state_dict(),
            'scheduler': {'step': run.step}, 'scaler': run.scaler.state_dict(), 'rng': rng_state(run),
            'best_val_acc': best_val, 'args': describe(vars(run.args)), 'settings': describe(run.settings)}


def resume(run, path):
    """Restore a run from last.pt; returns (epochs done, best val acc, wall seconds so far)."""
    try:
        state = torch.load(path, map_location=run.device, weights_only=True)
    except Exception as e:
        fail(f"cannot read {path} ({e}): --force starts the run over")
    if 'args' in state:  # the command that made it
        what = other_command(state['args'], state['settings'], run.args, run.settings)
    else:  # a last.pt from before it kept the command: its arch, net options and tricks
        made = (state.get('arch'), state.get('options'), state.get('tricks'))
        now = (run.args.arch, describe(run.net.options), sorted(run.settings))
        what = made != now and f"arch, options, tricks: {made} there, {now} here"
    if what:
        fail(f"{path} was made by another command ({what}): --force starts over, or pick another --out")
    try:
        run.net.load_state_dict(state['model'])
        run.optimizer.load_state_dict(state['optimizer'])
        run.scaler.load_state_dict(state['scaler'])
    except (RuntimeError, ValueError, KeyError) as e:
        fail(f"{path} does not fit this run ({str(e).splitlines()[0]}): --force starts over")
    run.step = state['scheduler']['step']
    set_rng_state(run, state['rng'])
    return state['epoch'], state['best_val_acc'], state['wall_seconds']


def read_log(path, upto):
    """The log lines of epochs already checkpointed (a killed run may have logged one more)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r['epoch'] <= upto]


def write_log(path, rows):
    tmp = path.with_suffix('.tmp')
    tmp.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    os.replace(tmp, path)


@contextlib.contextmanager
def ctrl_c_held():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and raise it when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def fmt_time(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def tensorboard(args, out, log):
    """A SummaryWriter in out/tensorboard, or None (without --tensorboard, or tensorboard)."""
    if not args.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("--tensorboard: tensorboard is not installed (pip install tensorboard); going on without it")
        return None
    return SummaryWriter(out / 'tensorboard')


@torch.no_grad()
def print_summary(run):
    """Each leaf layer's output shape and parameter count, for one batch of two test images."""
    d, net, rows = run.data, run.net, []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: rows.append(
        (name, type(m).__name__, tuple(o.shape), sum(p.numel() for p in m.parameters(recurse=False)))))
        for name, m in net.named_modules() if name and not any(m.children())]
    images, _ = next(d.test.batches([d.test_index[:2]]))
    net.eval()
    try:
        net(d.normalize(data.test_view(images, d.test_image_size)))
    finally:
        for h in hooks:
            h.remove()
    width = max(len(r[0]) for r in rows)
    run.log(f"{'layer':<{width}}  {'type':<18} {'output':<22} {'params':>10}")
    for name, kind, shape, params in rows:
        run.log(f"{name:<{width}}  {kind:<18} {str(shape):<22} {params:>10,}")
    run.log(f"{'total':<{width}}  {'':<18} {'':<22} {sum(p.numel() for p in net.parameters()):>10,}")


def model_file(run):
    """What evaluate.py and distill.py need: arch, constructor switches, weights, preprocessing.

    Anything a trick attached beside the net's own weights (EMA's average) goes under 'extra'."""
    d, net = run.data, run.net
    with torch.device('meta'):
        own = set(models.build(run.args.arch, **net.options).state_dict())
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    return {'arch': run.args.arch, 'options': net.options, 'state_dict': {k: v for k, v in state.items() if k in own},
            'extra': {k: v for k, v in state.items() if k not in own}, 'classes': list(d.classes),
            'image_size': d.image_size, 'test_image_size': d.test_image_size, 'load_size': d.load_size,
            'test_load_size': d.test_load_size, 'mean': d.mean.flatten().tolist(), 'std': d.std.flatten().tolist(),
            'dataset': d.dataset}


# ---------------------------------------------------------------- main

def main(script, argv=None):
    """Train with the script's tricks (and --with's); returns the result dict."""
    started = time.time()
    run = prepare(script, argv)
    args, log, out = run.args, run.log, run.out
    state = check_run_dir(out, args, run.settings, run.rank)
    if state == 'done':
        result = json.loads((out / 'result.json').read_text())
        log(f"{out} is finished already (--resume)")
        log(f"final test accuracy: {result['final_test_acc']:.2f}%")
        return result
    try:
        setup(run)
    except KeyboardInterrupt:
        fail("interrupted before the first epoch (while loading the data or building the net): nothing saved")
    if run.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if run.world > 1:
        dist.barrier()
    start_epoch, best_val, wall_before = 0, None, 0.0
    if state == 'resume':
        start_epoch, best_val, wall_before = resume(run, out / 'last.pt')
        log(f"resumed {out} after epoch {start_epoch}")
    rows = read_log(out / 'log.jsonl', start_epoch)
    writer = tensorboard(args, out, log) if run.rank == 0 else None
    if args.summary and run.rank == 0:
        print_summary(run)
    tricks = ', '.join(f"{n} {describe(s)}" for n, s in run.settings.items()) or 'none (baseline)'
    log(f"{args.script}: {args.arch} on {args.dataset}, {plural(args.epochs, 'epoch')} of "
        f"{plural(run.steps_per_epoch, 'step')}, "
        f"batch {args.batch_size}, tricks: {tricks}, device {device_name(run.device, run.world)}"
        f"{', amp ' + str(run.amp_dtype).split('.')[-1] if run.amp_dtype else ''}, out {out}")

    saved = start_epoch  # the epochs last.pt holds
    try:
        for epoch in range(start_epoch, args.epochs):
            t0 = time.perf_counter()
            stats, steps = train_epoch(run, epoch)
            if run.world > 1:
                stats[1] = torch.where(stats[1] < 0, float('inf'), stats[1])
                dist.all_reduce(stats[1:], op=dist.ReduceOp.MIN)
                dist.all_reduce(stats[:1])
                stats[0] /= run.world
                # each process's last forwards updated its own BN statistics: evaluate and save rank 0's
                for buffer in run.net.buffers():
                    dist.broadcast(buffer, 0)
            train_loss, bad = stats.tolist()  # the one read of the training metrics per epoch
            train_seconds = time.perf_counter() - t0
            if 0 <= bad < float('inf'):
                fail(f"the loss became nan or inf at step {int(bad)} (epoch {epoch + 1}); {out}/last.pt holds epoch "
                     f"{epoch}: lower --lr (or drop --amp) and --resume, or --force to start over")
            row = {'epoch': epoch + 1, 'lr': learning_rate(run, run.step - 1), 'train_loss': train_loss}
            if len(run.data.val_index):
                row.update(args.evaluate(run, run.data.train, run.data.val_index, 'val'))
                best_val = max(best_val or 0.0, row['val_acc'])
            row.update(args.evaluate(run, run.data.test, run.data.test_index, 'test'))
            if args.num_classes <= 5:  # top-5 of 5 classes or fewer is always 100%
                row = {k: v for k, v in row.items() if not k.endswith('_top5')}
            row['images_per_sec'] = steps * args.batch_size / train_seconds
            row['epoch_seconds'] = time.perf_counter() - t0
            rows.append(row)
            ckpt = checkpoint(run, epoch + 1, best_val, wall_before + time.time() - started)
            with ctrl_c_held():  # log.jsonl, last.pt and the message below always agree
                if run.rank == 0:
                    write_log(out / 'log.jsonl', rows)
                    save_atomic(ckpt, out / 'last.pt')
                saved = epoch + 1
            if writer:
                for key, value in row.items():
                    if key != 'epoch':
                        writer.add_scalar(key, value, row['epoch'])
                writer.flush()
            eta = (args.epochs - epoch - 1) * sum(r['epoch_seconds'] for r in rows[-3:]) / len(rows[-3:])
            accs = '  '.join(f"{k} {v:.2f}%" for k, v in row.items() if k.endswith('_acc'))
            log(f"epoch {epoch + 1}/{args.epochs}  lr {row['lr']:.4g}  train_loss {train_loss:.4f}  "
                f"test_loss {row['test_loss']:.4f}  {accs}  {row['images_per_sec']:.0f} img/s  "
                f"{row['epoch_seconds']:.1f}s  ETA {fmt_time(eta)}")
        result = {'script': args.script, 'tricks': describe(run.settings), 'args': describe(vars(args)),
                  'final_test_acc': rows[-1]['test_acc'], 'final_test_top5': rows[-1].get('test_top5'),
                  'best_val_acc': best_val, 'epochs': args.epochs, 'wall_seconds': wall_before + time.time() - started,
                  'device': device_name(run.device, run.world), 'torch': torch.__version__,
                  'finished': time.strftime('%Y-%m-%d %H:%M:%S')}
        if writer:
            writer.close()
        with ctrl_c_held():  # model.pt and result.json are written whole or not at all
            if run.rank == 0:
                save_atomic(model_file(run), out / 'model.pt')
                tmp = out / 'result.json.tmp'
                tmp.write_text(json.dumps(result, indent=2) + '\n')
                os.replace(tmp, out / 'result.json')
    except data.DataError as e:  # an unreadable image met while streaming
        fail(str(e))
    except KeyboardInterrupt:  # Ctrl-C, or run_all.sh's time budget
        fail(f"interrupted: {out}/last.pt holds {saved} of {args.epochs} epochs; the same command with --resume "
             "carries on from there")

    log(f"final test accuracy: {result['final_test_acc']:.2f}%")
    return result
