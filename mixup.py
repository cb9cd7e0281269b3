"""Mixup (Bag of Tricks, section 5.4; Zhang et al. 2018).

Each batch is blended with itself reversed, images and targets (class probabilities) alike:

    lambda ~ Beta(alpha, alpha),   x = lambda x_i + (1 - lambda) x_j,   y = lambda y_i + (1 - lambda) y_j,

one lambda per batch, j = N-1-i (pairing with the reversed batch, as gluon-cv and timm do:
one less gather, the same distribution). The loss is cross-entropy with the soft target y,
so it composes with label smoothing and distillation.

Flag: --alpha (default 0.2).
Paper (ResNet-50-D on ImageNet, with cosine and label smoothing): 78.31 -> 79.15 top-1
(Table 6), from 200 epochs instead of 120: mixup needs longer training.
Measured here (docs/ablation-recipe.md, row mixup: resnet20, CIFAR-10 (JPEG copy), 30 epochs,
batch 128, 4 seeds): 85.87 -> 85.25 top-1, -0.61 +- 0.26 (95% interval).
Measured here (docs/ablation-cpu.md, row mixup: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 128, 4 seeds): 77.08 -> 75.22 top-1, -1.87 +- 0.87 (95% interval).

    python mixup.py --alpha 0.2
"""
import sys

import torch

import common
from support.flags import beta_alpha  # the range torch's Beta sampler draws right


def add_args(parser):
    parser.add_argument('--alpha', type=beta_alpha, default=0.2,
                        help='Beta(alpha, alpha) for the mixing weight, 0.01 .. 1e38 (default: %(default)s)')


def mix(images, targets, lam):
    return lam * images + (1 - lam) * images.flip(0), lam * targets + (1 - lam) * targets.flip(0)


def batch(images, targets, args):
    lam = torch.distributions.Beta(args.alpha, args.alpha).sample().item()  # on the CPU: no device sync
    return mix(images, targets, lam)


if __name__ == '__main__':
    common.main(sys.modules[__name__])
