"""Benchmark: is a training step's time the model's time?

In one run, with one model and one set of settings, the images per second of
  (a) the real training loop (common.train_epoch: in-memory uint8 data, batched augmentation,
      lr schedule, metrics on the device; on a GPU the step is one CUDA graph),
  (b) the model step alone, on one ready batch, over and over (on a GPU: the graph's replay),
  (c) the conventional loop: torchvision ImageFolder (or CIFAR10) + PIL transforms + a
      DataLoader with --workers worker processes (default: one per CPU core), feeding the same
      model step,
  (d) on a GPU, the real loop with the step eager (--no-cuda-graph, the same flags),
and the ratios a/b (1.0 = the loop costs nothing beyond the model), a/c and a/d (the graph's
speed-up). On a GPU it also times one replay on the GPU alone (t_replay, CUDA events): runs
sharing a GPU take turns on it, so together they train at most batch / t_replay images per
second; above 0.85 ms it prints the step's kernels by GPU time, the next thing to make faster.

The three are measured in interleaved rounds, each after a few untimed warm-up steps (which
also drain what the DataLoader prefetched meanwhile). The rates are medians over rounds; the
ratios are medians of each round's ratios, whose terms were timed seconds apart, so that the
machine's drift (seen here: +-6% between rounds on a 2-core VM) cancels. Timings on a busy
machine mean nothing: run nothing else heavy meanwhile.

Where the step is eager and not compiled it also counts the operations (top-level PyTorch ops,
views included, through torch.profiler) of a step of (a) and of (b): a step paced by launching
its kernels pays for each operation the loop adds to the model's.

    python tools/bench.py --data DIR --arch resnet20 --batch-size 128
"""
import argparse
import os
import statistics
import sys
import time

from pathlib import Path

import torch
import torchvision
import torchvision.transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the loop's modules, at the root
import common  # noqa: E402
import augment  # noqa: E402
from support import sources  # noqa: E402
from support.device import device_name  # noqa: E402
from support.flags import Parser  # noqa: E402


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


def replay_ms(graph, replays=50):
    """GPU milliseconds of one replay of a CUDA graph (CUDA events: the GPU's time, not the host's)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / replays


def kernels_by_time(fn, rows=15):
    """torch.profiler's table of the GPU kernels fn() runs, the longest first."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = prof.key_averages()
    key = 'self_device_time_total' if hasattr(events[0], 'self_device_time_total') else 'self_cuda_time_total'
    return events.table(sort_by=key, row_limit=rows)


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


def conventional_loader(run, workers):
    """torchvision's dataset + per-image PIL transforms + DataLoader workers: the usual way."""
    args, data = run.args, run.data
    mean, std = data.mean.flatten().tolist(), data.std.flatten().tolist()
    if data.image_size <= augment.PAD_CROP_MAX:
        size = data.image_size
        resize = [T.Resize((size, size))] if args.dataset == 'folder' else []  # as the loop's load
        steps = resize + [T.RandomCrop(data.image_size, padding=4), T.RandomHorizontalFlip()]
    else:
        steps = [T.RandomResizedCrop(data.image_size), T.RandomHorizontalFlip()]
    transform = T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])
    if args.dataset == 'folder':
        dataset = torchvision.datasets.ImageFolder(sources.find_folder_splits(args.data)[0], transform=transform)
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
    graphed = run.graph is not None and run.graph.capture
    eager = common.prepare(sys.modules[__name__], rest + ['--epochs', '1000', '--no-cuda-graph']) if graphed else None
    if eager:
        eager.data = run.data  # the same input path: its own load may have found less memory free and streamed

    ready = next(common.train_batches(run, 0))  # (b): one batch through the real pipeline, reused
    epoch = iter(range(10**9))
    batches = iter(())

    def real_steps(n, run=run):  # (a), or (d) with run=eager: the real loop, n steps at a time
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
        y = torch.nn.functional.one_hot(y, len(run.data.classes)).float()  # class probabilities, as the loop's
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        common.train_step(run, x, y)

    ops_a = ops_b = None  # a compiled or graphed step is a few opaque operations: not counted
    if not args.compile and not graphed:
        real_steps(2)
        ops_b = operations(model_step)
        # (a)'s operations per step: an epoch of `longer` steps less one of 1 step, so that what an
        # epoch does once (its shuffle, the read of its losses) cancels; with 1 step an epoch it stays in
        longer = min(6, run.steps_per_epoch)
        ops_a = operations(lambda: real_steps(longer))
        if longer > 1:
            ops_a = (ops_a - operations(lambda: real_steps(1))) / (longer - 1)
    rates = {'a': [], 'b': [], 'c': [], 'd': []}
    b = args.batch_size
    print(f"bench: {args.arch}, batch {b}, {device_name(device)}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}, {str(run.amp_dtype or 'fp32').split('.')[-1]}"
          f"{', compiled' if args.compile else ''}, step {run.step_kind}; {own.rounds} rounds x {own.steps} steps, "
          "medians", flush=True)

    def rate(steps, warmup, fn):
        return own.steps * b / time_steps(device, steps, warmup, fn)

    for _ in range(own.rounds):
        rates['a'].append(rate(1, 1, lambda: real_steps(own.steps)))  # a warm-up epoch, then one timed
        rates['b'].append(rate(own.steps, 2, model_step))
        rates['c'].append(rate(own.steps, 5, conventional_step))
        if eager:
            rates['d'].append(rate(1, 1, lambda: real_steps(own.steps, run=eager)))
    median = {k: statistics.median(v) for k, v in rates.items() if v}
    ratios = {f'a/{k}': statistics.median(x / y for x, y in zip(rates['a'], rates[k])) for k in median if k != 'a'}
    step = 'the graph replayed' if graphed else 'the model step alone'
    print(f"(a) real loop (uint8 in memory, batched augmentation): {median['a']:8.1f} img/s")
    print(f"(b) {step} on ready tensors:{' ' * (34 - len(step))}{median['b']:8.1f} img/s")
    print(f"(c) ImageFolder + PIL + DataLoader({own.workers} workers):         {median['c']:8.1f} img/s")
    if eager:
        print(f"(d) real loop with the step eager (--no-cuda-graph):   {median['d']:8.1f} img/s")
    print('   '.join(f"{k} = {v:.3f}" for k, v in ratios.items()) + "   (medians of per-round ratios)")
    result = {**median, **ratios, 'rounds': rates, 'ops_a': ops_a, 'ops_b': ops_b, 't_replay': None}
    if ops_b is not None:
        print(f"operations per step: (a) {ops_a:.0f}, (b) {ops_b}; their ratio {ops_b / ops_a:.3f}")
    if graphed and run.graph.graph is not None:  # captured (after the warm-up steps)
        result['t_replay'] = replay_ms(run.graph.graph)
        print(f"t_replay = {result['t_replay']:.3f} ms of GPU time per step: runs sharing this GPU train at most "
              f"{1000 * b / result['t_replay']:.0f} img/s together")
        if result['t_replay'] > 0.85:  # the next lever (fusion, bf16, the memory format) is in these kernels
            table = kernels_by_time(lambda: [common.train_step(eager, *ready) for _ in range(5)])
            print(f"the kernels of 5 steps (profiled eager: the graph replays the same ones), the longest first:\n{table}")
    return result


if __name__ == '__main__':
    main(sys.argv[1:])
