"""Benchmark: is a training step's time the model's time?

In one run, with one model and one set of settings, the images per second of
  (a) the real training loop (common.train_epoch: in-memory uint8 data, batched augmentation,
      lr schedule, metrics on the device),
  (b) the model step alone, on one ready batch, over and over,
  (c) the conventional loop: torchvision ImageFolder (or CIFAR10) + PIL transforms + a
      DataLoader with --workers worker processes (default: one per CPU core), feeding the same
      model step,
and the ratios a/b (1.0 = the loop costs nothing beyond the model) and a/c.

The three are measured in interleaved rounds, each after a few untimed warm-up steps (which
also drain what the DataLoader prefetched meanwhile). The rates are medians over rounds; the
ratios are medians of each round's ratios, whose terms were timed seconds apart, so that the
machine's drift (seen here: +-6% between rounds on a 2-core VM) cancels. Timings on a busy
machine mean nothing: run nothing else heavy meanwhile.

It also counts the operations (top-level PyTorch ops, views included, through torch.profiler)
of a step of (a) and of (b), when not compiled: on a GPU, a small net's step can be paced by
launching its kernels, and then each operation the loop adds to the model's costs time there
(an H200 gave ResNet-20 an a/b of 0.857; this count, taken on a CPU for the same code, 0.863).

    python bench.py --data /tmp/cifar10 --arch resnet20 --batch-size 128
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torchvision
import torchvision.transforms as T

import common
import data
from support.device import device_name
from support.flags import Parser


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elif device.type == 'mps':
        torch.mps.synchronize()


def time_steps(device, steps, warmup, step):
    """Seconds for `steps` calls of step() after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - t


def operations(fn):
    """How many top-level PyTorch operations fn() runs (views included: each is a dispatch)."""
    from torch.profiler import ProfilerActivity, profile
    os.environ.setdefault('KINETO_LOG_LEVEL', '5')  # without a GPU, the CUDA build's profiler logs an error
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(event.cpu_parent is None for event in prof.events())


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


def conventional_loader(run, workers):
    """torchvision's dataset + per-image PIL transforms + DataLoader workers: the usual way."""
    args, d = run.args, run.data
    mean, std = d.mean.flatten().tolist(), d.std.flatten().tolist()
    if d.image_size <= data.PAD_CROP_MAX:
        resize = [T.Resize((d.image_size, d.image_size))] if args.dataset == 'folder' else []  # as the loop's load
        augment = resize + [T.RandomCrop(d.image_size, padding=4), T.RandomHorizontalFlip()]
    else:
        augment = [T.RandomResizedCrop(d.image_size), T.RandomHorizontalFlip()]
    transform = T.Compose(augment + [T.ToTensor(), T.Normalize(mean, std)])
    if args.dataset == 'folder':
        dataset = torchvision.datasets.ImageFolder(data.find_folder_splits(args.data)[0], transform=transform)
    else:
        cls = torchvision.datasets.CIFAR10 if args.dataset == 'cifar10' else torchvision.datasets.CIFAR100
        dataset = cls(args.data, train=True, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0,
                                       pin_memory=run.device.type == 'cuda')


def main(argv=None):
    parser = Parser(prog='bench.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog='Every flag of the training scripts works too (--arch, --amp, --with ...).')
    parser.add_argument('--steps', type=common.at_least(1), default=8, help='timed steps per round (default: %(default)s)')
    parser.add_argument('--rounds', type=common.at_least(1), default=10, help='interleaved rounds (default: %(default)s)')
    parser.add_argument('--workers', type=common.at_least(0), default=cores(),
                        help="DataLoader workers for (c) (default: one per CPU core, %(default)s here)")
    own, rest = parser.parse_known_args(argv)
    run = common.prepare(sys.modules[__name__], rest + ['--epochs', '1000'])
    args, device = run.args, run.device

    ready = next(common.train_batches(run, 0))  # (b): one batch through the real pipeline, reused
    epoch = iter(range(10**9))
    batches = iter(())

    def real_steps(n):  # (a): the real loop, n steps at a time
        stats, done = common.train_epoch(run, next(epoch), max_steps=n)
        stats.tolist()  # the loop's one read per epoch: included, as in training

    def model_step():
        common.train_step(run, *ready)

    loader = conventional_loader(run, own.workers)

    def conventional_step():
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        common.train_step(run, x, y)

    ops_a = ops_b = None  # a compiled step is a few opaque operations: not counted
    if not args.compile:
        real_steps(2)
        ops_b = operations(model_step)
        # (a)'s operations per step: an epoch of `longer` steps less one of 1 step, so that what an
        # epoch does once (its shuffle, the read of its losses) cancels; with 1 step an epoch it stays in
        longer = min(6, run.steps_per_epoch)
        ops_a = operations(lambda: real_steps(longer))
        if longer > 1:
            ops_a = (ops_a - operations(lambda: real_steps(1))) / (longer - 1)
    rates = {'a': [], 'b': [], 'c': []}
    b = args.batch_size
    print(f"bench: {args.arch}, batch {b}, {device_name(device)}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}, {str(run.amp_dtype or 'fp32').split('.')[-1]}"
          f"{', compiled' if args.compile else ''}; {own.rounds} rounds x {own.steps} steps, medians", flush=True)
    for _ in range(own.rounds):
        real_steps(2)  # warm-up
        sync(device)
        t = time.perf_counter()
        real_steps(own.steps)
        sync(device)
        rates['a'].append(own.steps * b / (time.perf_counter() - t))
        rates['b'].append(own.steps * b / time_steps(device, own.steps, 2, model_step))
        rates['c'].append(own.steps * b / time_steps(device, own.steps, 5, conventional_step))
    a, bb, c = (statistics.median(rates[k]) for k in 'abc')
    a_b = statistics.median(x / y for x, y in zip(rates['a'], rates['b']))
    a_c = statistics.median(x / y for x, y in zip(rates['a'], rates['c']))
    print(f"(a) real loop (uint8 in memory, batched augmentation): {a:8.1f} img/s")
    print(f"(b) model step alone on ready tensors:                  {bb:8.1f} img/s")
    print(f"(c) ImageFolder + PIL + DataLoader({own.workers} workers):         {c:8.1f} img/s")
    print(f"a/b = {a_b:.3f}   a/c = {a_c:.3f}   (medians of per-round ratios)")
    if ops_b is not None:
        print(f"operations per step: (a) {ops_a:.0f}, (b) {ops_b}; their ratio {ops_b / ops_a:.3f}")
    return {'a': a, 'b': bb, 'c': c, 'a/b': a_b, 'a/c': a_c, 'rounds': rates, 'ops_a': ops_a, 'ops_b': ops_b}


if __name__ == '__main__':
    main(sys.argv[1:])
