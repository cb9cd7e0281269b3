"""Cosine learning-rate decay (Bag of Tricks, section 5.1; Loshchilov & Hutter 2017).

In place of the baseline's step decay, the lr follows half a cosine from its peak to zero, per
iteration:

    eta_t = 0.5 * (1 + cos(pi * t / (T - 1))) * eta,    t = 0 .. T-1,

T the iterations after the warmup (all of them without one), so the first of them runs at the
peak eta and the last at 0. With warmup.py the lr first climbs linearly to eta over W steps and
the cosine then runs over the remaining T = total - W, as in the paper and gluon-cv.

No flag of its own.
Paper (ResNet-50-D on ImageNet, with warmup): 77.16 -> 77.91 top-1 (Table 6).
Measured here (docs/ablation-recipe.md, row cosine: resnet20, CIFAR-10 (JPEG copy), 30 epochs,
batch 128, 4 seeds): 85.87 -> 86.90 top-1, +1.03 +- 0.53 (95% interval).
Measured here (docs/ablation-cpu.md, row cosine: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 128, 4 seeds): 77.08 -> 78.56 top-1, +1.48 +- 1.25 (95% interval).

    python cosine.py --with warmup
"""
import math
import sys

import common


def schedule(step, total_steps, args):
    return 0.5 * (1 + math.cos(math.pi * step / max(1, total_steps - 1)))


if __name__ == '__main__':
    common.main(sys.modules[__name__])
