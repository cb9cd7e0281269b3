"""The one training loop that every script of this repo runs.

`python baseline.py` runs it with no trick on; each other script runs it with its own trick, and
`--with NAME ...` adds the tricks of NAME.py. Read it top to bottom: the recipe, the trick
contract, the baseline's parts a trick may replace, the step, the epoch, evaluation, set-up, and
main. Beside it: augment.py (the batched augmentation), models/ (the nets), and support/, what a
reader of the loop need not read first: the data (sources.py, datasets.py), the command line and
how tricks compose (flags.py, tricks.py), the net's set-up (nets.py), the CUDA graph
(cuda_graph.py), devices and precision (device.py), what a run saves and prints (archive.py,
runfolder.py, report.py).
"""
import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import augment
from support import archive, cuda_graph, datasets, report, runfolder, sources
from support.device import agree_across_processes, amp_dtype, check_shares, start_processes
from support.flags import fail, fill_in_defaults
from support.nets import build_net
from support.tricks import bad_batch, hooks, parse, replaced
# the flag types the tricks use, here so that a trick imports only common
from support.flags import at_least, fraction, positive_float, unit_interval  # noqa: F401

# ---------------------------------------------------------------- the recipe
# The baseline every script starts from: He et al. 2016's CIFAR recipe, in 30 epochs (and the same
# SGD for folder data, Bag of Tricks section 2). Each is a flag: a trick changes the ones it is
# about (its DEFAULTS), the command line any (--lr 0.05). Augmentation: augment.py.
RECIPE = {
    'arch': None,               # resnet20 for images up to 64 px (CIFAR), resnet18 above
    'epochs': 30,
    'batch_size': 128,          # the global batch, split over the processes under torchrun
    'lr': 0.1,                  # the peak lr, for batch 128
    'momentum': 0.9,            # SGD with momentum (sgd() below)
    'nesterov': False,
    'weight_decay': 5e-4,       # as kuangliu/pytorch-cifar for short runs; He et al.: 1e-4 over 164 epochs
    'milestones': [0.5, 0.75],  # the lr x0.1 at these fractions of the steps (step_decay() below)
    'init': 'default',          # the nets' own (Kaiming normal); the paper's baseline: 'xavier'
    'color_jitter': 0.0,        # off; the paper's ImageNet recipe: 0.4
    'lighting': 0.0,            # off; the paper's: PCA lighting with std 0.1
}


# ---------------------------------------------------------------- the trick contract
# A trick is a module; the loop calls the functions it defines, found by name. Each is optional.
#
#     add_args(parser)                      its flags (parser.add_argument)
#     DEFAULTS = {'lr': 1e-3, ...}          the defaults of the loop's flags that it changes
#     model(net, args) -> net               change the freshly built net (before --weights load)
#     param_groups(groups, net, args) -> groups
#                                           the optimizer's parameter groups
#     lr_factor(step, total_steps, args) -> factor on the lr at this step (0-based, per iteration)
#     batch(images, targets, args) -> images, targets
#                                           change a training batch: float N x 3 x S x S images in
#                                           [0, 1] (normalised after), targets N x K class
#                                           probabilities (one-hot for a plain batch); draw random
#                                           numbers from torch's global generator: seeded per run,
#                                           saved in last.pt, the same in every torchrun process; a
#                                           cutout fills with the data's mean, which normalisation maps
#                                           to 0: augment.MEAN_STD[args.dataset][0], one float a channel
#     init(run)                             re-initialise the net's weights once data, net and
#                                           optimizer are ready (every trick's init runs before
#                                           any trick's start, which may copy the net)
#     start(run)                            once data, net and optimizer are ready, before a
#                                           checkpoint is loaded into them; a trick that keeps
#                                           state puts it in run.extra[key] (last.pt saves it),
#                                           what must not be saved in run.aside[key] (a teacher)
#     after_step(run)                       after each optimizer step (eager, also on a graphed GPU)
#
# and these, which replace the loop's own (two tricks that define the same one cannot combine):
#
#     loss(logits, targets, images, run) -> loss       default: cross_entropy (images normalised)
#     optimizer(param_groups, args) -> optimizer       default: sgd
#     schedule(step, total_steps, args) -> factor      default: step_decay (a factor on the peak lr)
#     evaluate(run, split, index, name) -> metrics     default: evaluate
#     warmup_steps(total_steps, args) -> W             default: 0; the lr climbs linearly to its peak
#                                                      over W steps, then the schedule runs over
#                                                      the steps after them
#
# Tricks compose in the order they are named (the script, then --with's): flags add up, model,
# param_groups and batch chain, lr factors multiply.
#
# On a GPU the step (forward, loss, backward, optimizer step) runs as one CUDA graph, recorded
# once and replayed (support/cuda_graph.py). A loss hook runs inside it, so it must not call
# .item() or .tolist(), branch on a tensor's value, make tensors whose shape changes from step to
# step, or compute a Python number that changes per step: what Python computes is frozen at
# capture. State it keeps goes in tensors updated in place (as ghmc.py's running counts do).
# batch, after_step and the rest run eagerly, outside the graph.


# ---------------------------------------------------------------- the baseline's replaceable parts

def cross_entropy(logits, targets, images, run):
    """The baseline loss: cross-entropy against the class probabilities."""
    return F.cross_entropy(logits, targets)


def sgd(param_groups, args):
    """The baseline optimizer: SGD with momentum, weight decay as L2 in the gradient."""
    return torch.optim.SGD(param_groups, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                           weight_decay=args.weight_decay)


def step_decay(step, total_steps, args):
    """The baseline schedule: x0.1 at each of --milestones (fractions of the steps)."""
    return 0.1 ** sum(step >= round(m * total_steps) for m in args.milestones)


def no_warmup(total_steps, args):
    return 0


@dataclass
class Run:
    """One training run, made whole by build(); only `step` changes while it trains."""
    args: object            # the flags, with the defaults that follow from the data filled in
    tricks: list            # the trick modules, in the order they compose
    trick_flags: dict       # per trick, its flags and the defaults it changed (result.json)
    rank: int               # this process, of `world` (torchrun); 0 and 1 otherwise
    world: int
    device: torch.device
    out: Path               # the run directory
    log: object             # print, on rank 0 only
    data: datasets.Data
    net: nn.Module          # the plain net: what last.pt and model.pt hold
    train_net: nn.Module    # what the step calls: the net, in DistributedDataParallel and/or compiled
    extra: nn.ModuleDict    # the tricks' state beside the net (EMA's average), saved with it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype  # None: fp32
    gen: torch.Generator    # the augmentation's random numbers, on the device
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    loss: object            # the loss, schedule and evaluation in use: the baseline's or a trick's
    schedule: object
    evaluate: object
    fingerprint: dict = None  # what identifies the data (sources.fingerprint): in last.pt, model.pt, result.json
    aside: dict = field(default_factory=dict)  # what tricks keep for the run but never save (distill's teacher)
    step: int = 0
    graph: object = None    # the step as a CUDA graph (support/cuda_graph.py), or None: eager
    step_kind: str = 'eager'  # how the step runs, for the opening line

    def hooks(self, name):
        return hooks(self.tricks, name)


# ---------------------------------------------------------------- the step and the epoch

def learning_rate(run, step):
    """The peak lr ramped up over the warmup, then times the schedule over the steps after it."""
    args, warmup = run.args, run.warmup_steps
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    lr = args.lr * ramp * run.schedule(max(0, step - warmup), run.total_steps - warmup, args)
    for lr_factor in run.hooks('lr_factor'):
        lr *= lr_factor(step, run.total_steps, args)
    return lr


def train_batches(run, epoch):
    """This process's share of each global batch: augmented (augment.py), through the tricks, normalised."""
    data, args = run.data, run.args
    shuffle = torch.Generator().manual_seed(args.seed * 100_003 + epoch)  # the same on every process
    order = data.train_index[torch.randperm(len(data.train_index), generator=shuffle)]
    order = augment.to_device(order, data.train.labels.device)  # one copy per epoch, not one per batch
    share = args.batch_size // run.world
    starts = [step * args.batch_size + run.rank * share for step in range(run.steps_per_epoch)]
    # each batch: uint8 images and their labels, one gather from the split in memory on the device (a split too
    # large for memory comes from DataLoader workers instead: support/datasets.py)
    for images, labels in data.train.batches(order[start:start + share] for start in starts):
        images = augment.train_view(images, data.image_size, run.gen, args.color_jitter, args.lighting)
        targets = F.one_hot(labels, len(data.classes)).float()
        for batch in run.hooks('batch'):
            returned = batch(images, targets, args)
            if not (isinstance(returned, (tuple, list)) and len(returned) == 2 and all(map(torch.is_tensor, returned))):
                fail(bad_batch(batch, returned))  # its type and length, read in Python: no sync with the device
            images, targets = returned
        images = augment.normalize(images, data.mean, data.std)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        yield images, targets


def autocast(run):
    """Mixed precision where --amp asked for it (torch 2.4 refuses an autocast on MPS even when off).
    No cast cache: a CUDA graph's capture needs it off, and these nets use each weight once per forward."""
    if not run.amp_dtype:
        return contextlib.nullcontext()
    return torch.autocast(run.device.type, dtype=run.amp_dtype, cache_enabled=False)


def update(run, images, targets):
    """Forward, loss, backward, optimizer step: what a CUDA graph captures. [loss, train_ce] on the device:
    train_ce is the cross-entropy against the batch's targets, comparable across tricks that replace the loss."""
    with autocast(run):
        logits = run.train_net(images).float()
        loss = run.loss(logits, targets, images, run)
        ce = loss if run.loss is cross_entropy else F.cross_entropy(logits.detach(), targets)  # not computed twice
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return torch.stack([loss.detach(), ce.detach()])


def train_step(run, images, targets):
    """One optimizer step at the lr of run.step; returns [loss, train_ce] as a tensor on the device (no host sync)."""
    lr = learning_rate(run, run.step)
    if run.graph:
        loss = run.graph(images, targets, lr)
    else:
        for group in run.optimizer.param_groups:
            group['lr'] = lr
        run.optimizer.zero_grad(set_to_none=True)
        loss = update(run, images, targets)
    for after_step in run.hooks('after_step'):
        after_step(run)
    return loss


def loss_stats(losses, first_step):
    """[mean loss, mean train_ce, first non-finite loss's step (inf: none)] of [loss, train_ce]s, as one tensor."""
    losses, ces = torch.stack(losses, 1)  # rows: each a contiguous tensor, the loss's averaged as it always was
    bad = ~torch.isfinite(losses)
    first_bad = torch.where(bad.any(), first_step + bad.int().argmax(), float('inf'))
    return torch.stack([losses.mean(), ces.mean(), first_bad.float()])


def train_epoch(run, epoch, max_steps=None):
    """One pass over the training set: ([mean loss, mean train_ce, first non-finite step (inf: none)], steps).

    The losses stay on the device, a list of tensors (no work per step); the caller reads them once."""
    run.train_net.train()
    losses, first_step, last_print = [], run.step, time.perf_counter()
    for images, targets in train_batches(run, epoch):
        losses.append(train_step(run, images, targets))
        run.step += 1
        if time.perf_counter() - last_print > 30 and len(losses) < run.steps_per_epoch:  # slow machines: a line per 30 s
            last_print = time.perf_counter()
            mean, _, bad = loss_stats(losses, first_step).tolist()  # the one sync in 30 s
            run.log(f"  epoch {epoch + 1} step {len(losses)}/{run.steps_per_epoch}  train_loss {mean:.4f}")
            if bad < float('inf') and run.world == 1:
                break
        if max_steps and len(losses) >= max_steps:
            break
    return loss_stats(losses or [torch.zeros(2, device=run.device)], first_step), len(losses)  # no step: 0, 0, inf


def train(run, epoch):
    """One epoch of training: its log row so far (epoch, lr, train_loss, train_ce) and the images per second;
    stops where the loss stopped being a number."""
    t0 = time.perf_counter()
    stats, steps = train_epoch(run, epoch)
    if run.world > 1:
        agree_across_processes(run, stats)
    train_loss, train_ce, bad = stats.tolist()  # the one read of the training metrics per epoch
    seconds = time.perf_counter() - t0
    if bad < float('inf'):
        fail(report.diverged(run, epoch, f"the loss became nan or inf at step {int(bad)}"))
    row = {'epoch': epoch + 1, 'lr': learning_rate(run, run.step - 1), 'train_loss': train_loss, 'train_ce': train_ce}
    return row, min(steps * run.args.batch_size, len(run.data.train_index)) / seconds


EVAL_PIXELS = 1000 * 32 * 32  # an evaluation batch: 1,000 CIFAR images, or as many pixels at other sizes


@torch.no_grad()
def evaluate(run, split, index, name, net=None):
    """{name}_loss, {name}_acc and {name}_top5 (percent) on `index` of `split`, sharded over processes."""
    # under DDP the plain net: the wrapper's forward may sync buffers, a collective that would hang
    # when the processes' shards hold different numbers of batches
    net = net if net is not None else run.net if run.world > 1 else run.train_net
    net.eval()
    data = run.data
    mine = augment.to_device(index[run.rank::run.world], split.labels.device)  # one copy, not one per batch
    size = max(1, round(EVAL_PIXELS / data.test_image_size ** 2 / run.world))  # few launches a pass
    sums = torch.zeros(4, device=run.device)  # loss, top-1, top-5, count
    sums[3] = len(mine)
    for images, labels in split.batches(mine[i:i + size] for i in range(0, len(mine), size)):
        images = augment.test_view(images, data.test_image_size, data.test_load_size)
        images = augment.normalize(images, data.mean, data.std)
        if run.args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(run):
            logits = net(images).float()
        hits = logits.topk(min(5, logits.shape[1]), 1).indices == labels[:, None]
        sums[:3] += torch.stack([F.cross_entropy(logits, labels, reduction='sum'), hits[:, 0].sum().float(),
                                 hits.any(1).sum().float()])
    if run.world > 1:
        dist.all_reduce(sums)
    loss, top1, top5, n = sums.tolist()
    return {f'{name}_loss': loss / n, f'{name}_acc': 100 * top1 / n, f'{name}_top5': 100 * top5 / n}


def evaluate_epoch(run, epoch):
    """The epoch's val (with --val-split) and test figures; stops where the test loss is not a number."""
    row = {}
    if len(run.data.val_index):
        row.update(run.evaluate(run, run.data.train, run.data.val_index, 'val'))
    row.update(run.evaluate(run, run.data.test, run.data.test_index, 'test'))
    if not math.isfinite(row['test_loss']):
        fail(report.diverged(run, epoch, "the test loss became nan or inf"))
    if len(run.data.classes) <= 5:  # top-5 of 5 classes or fewer is always 100%
        row = {k: v for k, v in row.items() if not k.endswith('_top5')}
    return row


# ---------------------------------------------------------------- set-up

def build(args, tricks, trick_flags, rank, world, device, source, log, fingerprint=None):
    """Load the data, build the net and the optimizer: a Run ready for its first step."""
    try:
        data = datasets.load(source, round(args.image_size * args.test_scale), device, log, args.val_split,
                             args.subset, args.test_subset, args.cache_dir, args.stream)
    except datasets.DataError as e:
        fail(str(e))
    check_shares(args, world, len(data.train_index))  # a train set smaller than the batch, split over processes
    net = build_net(args, tricks, len(data.classes), log).to(device)  # support/nets.py
    if args.channels_last:
        net.to(memory_format=torch.channels_last)
    groups = [{'params': [p for p in net.parameters() if p.requires_grad], 'weight_decay': args.weight_decay}]
    for param_groups in hooks(tricks, 'param_groups'):
        groups = param_groups(groups, net, args)
    train_net = net
    if world > 1:
        train_net = nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == 'cuda' else None)
    if args.compile:
        train_net = torch.compile(train_net, mode=None if args.compile == 'default' else args.compile)
    precision = amp_dtype(args, device, log)
    steps_per_epoch = max(1, len(data.train_index) // args.batch_size)
    run = Run(args=args, tricks=tricks, trick_flags=trick_flags, rank=rank, world=world, device=device,
              out=Path(args.out), log=log, data=data, net=net, train_net=train_net, extra=nn.ModuleDict(),
              optimizer=replaced(tricks, 'optimizer', sgd)(groups, args),
              scaler=torch.amp.GradScaler(device.type, enabled=precision == torch.float16), amp_dtype=precision,
              gen=torch.Generator(device=device).manual_seed(args.seed * 1000 + rank),
              steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * args.epochs,
              warmup_steps=replaced(tricks, 'warmup_steps', no_warmup)(steps_per_epoch * args.epochs, args),
              loss=replaced(tricks, 'loss', cross_entropy), schedule=replaced(tricks, 'schedule', step_decay),
              evaluate=replaced(tricks, 'evaluate', evaluate),
              fingerprint=fingerprint or sources.fingerprint(source, args.val_split, args.subset, args.test_subset))
    report.note_left_out(run)
    for start in run.hooks('init') + run.hooks('start'):  # the weights first, then what copies them (EMA)
        start(run)
    capture, run.step_kind = cuda_graph.plan(run)
    if capture is not None:
        run.graph = cuda_graph.GraphedStep(run, update, capture)
    return run


def prepare(script, argv=None):
    """A Run from a command line, without its run directory: for tools/bench.py and the tests."""
    args, tricks, trick_flags, changed = parse(script, argv, RECIPE)
    rank, world, device = start_processes(args)
    source = fill_in_defaults(args, changed)
    return build(args, tricks, trick_flags, rank, world, device, source, report.printer(rank))


# ---------------------------------------------------------------- main

def main(script, argv=None):
    """Train with the script's tricks (and --with's): build the run, then each epoch train, evaluate,
    report and save; returns the result dict."""
    started = time.time()
    args, tricks, trick_flags, changed = parse(script, argv, RECIPE)
    rank, world, device = start_processes(args)
    log = report.printer(rank)
    source = fill_in_defaults(args, changed)  # the data set behind --data, and --out: given, or one per command
    out = Path(args.out)
    fingerprint = sources.fingerprint(source, args.val_split, args.subset, args.test_subset)
    with runfolder.stop_signals(), runfolder.claimed(out, rank, log):  # one run in a folder at a time
        state = archive.check_run_dir(out, args, trick_flags, rank, fingerprint, log)
        if state == 'done':
            return archive.finished_already(out, log)
        progress = archive.Progress(out, args.epochs)  # how far the run is, in last.pt and log.jsonl
        with progress.said_when_interrupted():  # Ctrl-C, SIGTERM, a bad image: one line, what last.pt holds
            run = build(args, tricks, trick_flags, rank, world, device, source, log, fingerprint)
            archive.begin(run, state, progress)  # --force sets the old run aside only now; --resume loads last.pt
            board = report.opening(run)
            for epoch in range(progress.saved, args.epochs):  # from the last epoch last.pt holds (--resume)
                t0 = time.perf_counter()
                row, images_per_sec = train(run, epoch)
                row.update(evaluate_epoch(run, epoch))
                row.update(images_per_sec=images_per_sec, epoch_seconds=time.perf_counter() - t0)
                archive.save_epoch(run, progress, row, started)
                archive.forget_old_run(progress)  # --force's old run, kept until an epoch of this one is saved
                board.add(row)
                log(report.epoch_line(run, row, progress.rows))
            board.close()
            result = archive.save_result(run, progress, started)
    log(f"final test accuracy: {result['final_test_acc']:.2f}%")
    return result
