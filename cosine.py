"""Cosine learning-rate decay (Bag of Tricks, section 5.1; Loshchilov & Hutter 2017).

In place of the baseline's step decay, the lr follows half a cosine from its peak to zero,
per iteration:

    eta_t = 0.5 * (1 + cos(pi * t / T)) * eta,    t = 0 .. T-1, T = total iterations,

so the first step runs at eta and the last at ~0 (eta * (pi / 2T)^2). With warmup.py the two
factors multiply. Cosine switches the step decay off by setting the default --milestones to
none.

No flag of its own.
Paper (ResNet-50-D on ImageNet, with warmup): 77.16 -> 77.91 top-1 (Table 6).

    python cosine.py --with warmup
"""
import math
import sys

import common


def add_args(parser):
    parser.set_defaults(milestones=[])  # the cosine replaces the step decay


def lr_factor(step, total_steps, args):
    return 0.5 * (1 + math.cos(math.pi * step / total_steps))


if __name__ == '__main__':
    common.main(sys.modules[__name__])
