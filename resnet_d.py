"""ResNet-B, -C and -D: the paper's model tweaks (Bag of Tricks, section 4).

ImageNet-style ResNets (resnet18/34/50), cumulative as in the paper and gluon-cv:
- B: a downsampling bottleneck's stride moves from its first 1x1 conv, which skipped 3/4 of
  the input, to its 3x3 conv (torchvision's resnet50 already is a ResNet-B).
- C: B, and the 7x7 stem conv becomes three 3x3 convs (32, 32, 64 channels).
- D: C, and a downsampling shortcut averages 2x2 (ceil_mode, count_include_pad=False)
  before a stride-1 1x1 conv, so it too sees every input.
CIFAR ResNets (resnet20 ... resnet110), not cumulative: D is the average-pool shortcut
alone, C the three-conv stem (16, 16, 16 channels) alone; B does not exist there (no 1x1
conv in a basic block's residual path) and stops with an error. A variant that does not
apply always stops with an error: it never does nothing.

Flag: --variant {B,C,D} (default D).
Paper (ResNet-50 on ImageNet, Table 5): 76.21 -> B 76.66 -> C 76.87 -> D 77.16 top-1: D alone (this
row's average-pool shortcut, on B+C) +0.29, B+C+D +0.95.
Measured here (docs/ablation-recipe.md, row resnet_d: resnet20, CIFAR-10 (JPEG copy), 30 epochs,
batch 128, 4 seeds): 85.87 -> 86.09 top-1, +0.22 +- 0.49 (95% interval: noise).
Measured here (docs/ablation-cpu.md, row resnet_d: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 128, 4 seeds): 77.08 -> 77.62 top-1, +0.54 +- 0.57 (95% interval: noise).

    python resnet_d.py --variant D
"""
import sys

import common
import models


def add_args(parser):
    parser.add_argument('--variant', choices=('B', 'C', 'D'), default='D', help='ResNet tweak (default: %(default)s)')


def model(model, args):
    return models.rebuild(model, variant=args.variant)


if __name__ == '__main__':
    common.main(sys.modules[__name__])
