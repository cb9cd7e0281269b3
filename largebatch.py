"""Large-batch training with the linear scaling rule (Bag of Tricks, section 3.1; Goyal et al. 2017).

A larger batch averages the gradient over more images: the same expected step with less
noise, so the lr may grow with the batch. The baseline's lr is set for batch 128 (the CIFAR
recipe; the paper's ImageNet rule is 0.1 x b / 256); here

    eta = --lr x batch / 128,

reached through the linear warmup of warmup.py (without which the first steps at the large
lr are unstable), then the baseline schedule.

Flags: --batch-size (default here 1024), --warmup-epochs (from warmup.py; 0: linear scaling
alone, the cpu table's row largebatch; its row largebatch+warmup keeps the default).
Paper (ResNet-50 on ImageNet): batch 256 -> 1024 with linear scaling alone 75.87 -> 75.17
top-1; with warmup 75.93 (Table 4).
Measured here (docs/ablation-recipe.md, row largebatch: resnet20, CIFAR-10 (JPEG copy), 30
epochs, batch 1024, 4 seeds): 85.87 -> 63.95 top-1, -21.92 +- 57.07 (95% interval: noise).
Its seed 2 collapsed to chance (10.00%); the other three ended 2.7 to 6.3 points under the
baseline's same seeds.
Measured here (docs/ablation-recipe.md, row largebatch+warmup: resnet20, CIFAR-10 (JPEG copy),
30 epochs, batch 1024, 4 seeds): 85.87 -> 85.17 top-1, -0.70 +- 0.57 (95% interval).
Measured here (docs/ablation-cpu.md, row largebatch: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 1024, 4 seeds): 77.08 -> 30.28 top-1, -46.80 +- 12.51 (95% interval).
Measured here (docs/ablation-cpu.md, row largebatch+warmup: resnet20, CIFAR-10 (JPEG copy),
6 epochs, batch 1024, 4 seeds): 77.08 -> 60.62 top-1, -16.46 +- 10.08 (95% interval).

    python largebatch.py --batch-size 1024
"""
import sys

import common
import warmup

DEFAULTS = {'batch_size': 1024}
add_args = warmup.add_args
warmup_steps = warmup.warmup_steps


def lr_factor(step, total_steps, args):
    return args.batch_size / 128


if __name__ == '__main__':
    common.main(sys.modules[__name__])
