"""Which memory format, precision and compilation make the model step fastest on this machine?

In one run, interleaved rounds of the model step alone (common.train_step on one ready batch)
for fp32 / --amp crossed with NCHW / channels_last, and fp32 channels_last under --compile,
each after warm-up steps; prints the median images per second of each, its ratio to fp32 NCHW,
and the seconds its first step took (for --compile: the compilation). The ratios, not the
absolute figures, are what carries over between runs. Measured figures: docs/speed.md.

    python tools/formats.py --data DIR --arch resnet20 --batch-size 128
"""
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench  # noqa: E402
import common  # noqa: E402
from support.device import device_name  # noqa: E402

SETTINGS = {'fp32 NCHW': ['--no-channels-last'], 'fp32 channels_last': [], 'amp NCHW': ['--amp', '--no-channels-last'],
            'amp channels_last': ['--amp'], 'fp32 channels_last compiled': ['--compile']}


def main(argv):
    steps, rounds = 8, 6
    runs, first = {}, {}
    for name, flags in SETTINGS.items():
        run = common.prepare(sys.modules[__name__], argv + flags + ['--epochs', '1000'])
        runs[name] = (run, next(common.train_batches(run, 0)))
        first[name] = bench.time_steps(run.device, 1, 0, lambda: common.train_step(run, *runs[name][1]))
    rates = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (run, batch) in runs.items():
            seconds = bench.time_steps(run.device, steps, 2, lambda: common.train_step(run, *batch))
            rates[name].append(steps * len(batch[1]) / seconds)
    base = statistics.median(rates['fp32 NCHW'])
    print(f"{device_name(runs['fp32 NCHW'][0].device)}; {rounds} rounds x {steps} steps, medians")
    for name, r in rates.items():
        amp = runs[name][0].amp_dtype
        label = f"{name} ({str(amp).split('.')[-1]})" if amp else name
        print(f"{label:30} {statistics.median(r):8.1f} img/s   x{statistics.median(r) / base:.2f}   "
              f"first step {first[name]:.1f} s")


if __name__ == '__main__':
    main(sys.argv[1:])
