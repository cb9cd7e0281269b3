"""How many runs at a time keep one GPU busy? The images per second of J training processes
sharing one device, added up, for each J given.

Each process sets up the real run (data in memory on the device, model, optimizer, the flags
given after `--`, --threads as run_all.sh sets it), warms up, says it is ready and waits; when
all J are ready they start together, run the real loop (common.train_epoch) for --seconds and
report the images they trained. Where launching kernels, not the GPU's work, sets a step's pace
(a small net's eager step), the sum grows with J until the GPU is full; a step that is one CUDA
graph keeps the GPU busier alone, and processes without MPS take turns on the GPU, so the sum
can reach at most batch / t_replay images per second (bench.py prints t_replay). tools/gpu.sh gives run_all.sh, as JOBS, the smallest J within 5% of the best.

    python tools/jobs.py --jobs 1 2 3 4 6 --seconds 10 -- --data DIR --arch resnet20 --amp
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import bench  # noqa: E402
import common  # noqa: E402
from support.flags import Parser  # noqa: E402


def child(seconds, flags):
    """One process: set up, warm up, report ready, wait for the start time on stdin, train, report."""
    run = common.prepare(sys.modules[__name__], flags + ['--epochs', '1000'])
    common.train_epoch(run, 0, max_steps=5)[0].tolist()  # warm-up (cudnn autotuning, compilation)
    print('ready', flush=True)
    start = float(sys.stdin.readline())
    time.sleep(max(0.0, start - time.time()))
    images, epoch = 0, 1
    while time.time() < start + seconds:
        stats, steps = common.train_epoch(run, epoch, max_steps=10)
        images += steps * run.args.batch_size
        epoch += 1
    bench.sync(run.device)
    print(json.dumps({'images': images, 'seconds': time.time() - start}), flush=True)


def line_starting(proc, start):
    """The first line of proc's output that starts with `start` (the lines before it are its log), or None."""
    for line in proc.stdout:
        if line.startswith(start):
            return line
    return None


def measure(jobs, seconds, flags):
    """Images per second of `jobs` processes at once, added up."""
    threads = ['--threads', str(max(1, bench.cores() // jobs))]  # as run_all.sh: the cores shared out once
    procs = [subprocess.Popen([sys.executable, __file__, '--child', str(seconds), '--', *threads, *flags], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(jobs)]
    for p in procs:
        if line_starting(p, 'ready') is None:
            for q in procs:
                q.kill()
            raise SystemExit(f"error: a process of {jobs} did not start (exit {p.wait()}); run its flags alone: "
                             f"python baseline.py {' '.join(flags)}")
    start = time.time() + 1.0
    for p in procs:
        p.stdin.write(f"{start}\n")
        p.stdin.flush()
    reports = [json.loads(line_starting(p, '{')) for p in procs]
    for p in procs:
        p.wait()
    return sum(r['images'] for r in reports) / max(r['seconds'] for r in reports)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index('--') if '--' in argv else len(argv)
    parser = Parser(prog='jobs.py', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--jobs', type=common.at_least(1), nargs='+', default=[1, 2, 3, 4, 6])
    parser.add_argument('--seconds', type=common.positive_float, default=10.0, help='timed seconds per J')
    parser.add_argument('--child', type=common.positive_float, metavar='SECONDS', help=argparse.SUPPRESS)
    own, flags = parser.parse_args(argv[:cut]), argv[cut + 1:]
    if own.child:
        return child(own.child, flags)
    rates = {}
    for jobs in own.jobs:
        rates[jobs] = measure(jobs, own.seconds, flags)
        print(f"{jobs} at a time: {rates[jobs]:8.0f} img/s in all ({rates[jobs] / rates[own.jobs[0]]:.2f}x "
              f"{own.jobs[0]} at a time)", flush=True)
    best = min(j for j, r in rates.items() if r >= 0.95 * max(rates.values()))
    print(f"JOBS={best}: the fewest runs at a time within 5% of the most images per second")
    return rates, best


if __name__ == '__main__':
    main()
