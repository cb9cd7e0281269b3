"""CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
Localizable Features", ICCV 2019).

A random box of each image is replaced by the same box of its partner (the reversed batch,
as in mixup.py), and the targets mix by the area each image keeps:

    lambda ~ Beta(alpha, alpha),   box of (H sqrt(1 - lambda)) x (W sqrt(1 - lambda)) at a uniform centre,
    clipped to the image,   lambda' = 1 - box area / (H W),   y = lambda' y_i + (1 - lambda') y_j.

lambda' is computed after clipping, so the targets always match the pixels. A batch gets
CutMix with probability --cutmix-prob; the others pass unchanged. Soft targets throughout:
it composes with mixup, label smoothing and distillation.

Flags: --cutmix-alpha (default 1.0), --cutmix-prob (default 0.5, the paper's CIFAR setting).
Paper: PyramidNet-200 on CIFAR-100, 16.45% -> 14.47% top-1 error; ResNet-50 on ImageNet,
23.68% -> 21.40% top-1 error (mixup: 22.58%).

    python cutmix.py --cutmix-alpha 1.0 --cutmix-prob 0.5
"""
import sys

import torch

import common
from support.flags import beta_alpha  # the range torch's Beta sampler draws right


def add_args(parser):
    parser.add_argument('--cutmix-alpha', type=beta_alpha, default=1.0,
                        help='Beta(alpha, alpha) for the kept area, 0.01 .. 1e38 (default: %(default)s)')
    parser.add_argument('--cutmix-prob', type=common.unit_interval, default=0.5,
                        help='probability that a batch gets CutMix (default: %(default)s)')


def cutmix_box(h, w, lam, cy, cx):
    """(top, bottom, left, right) of a box of area (1 - lam) h w centred at (cy, cx), clipped."""
    cut = (1 - lam) ** 0.5
    half_h, half_w = round(h * cut) // 2, round(w * cut) // 2
    return max(cy - half_h, 0), min(cy + half_h, h), max(cx - half_w, 0), min(cx + half_w, w)


def cutmix(images, targets, box):
    """Paste the box from the reversed batch; returns images, targets and the true lambda."""
    top, bottom, left, right = box
    images = images.clone()
    images[:, :, top:bottom, left:right] = images.flip(0)[:, :, top:bottom, left:right]
    h, w = images.shape[-2:]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return images, lam * targets + (1 - lam) * targets.flip(0), lam


def batch(images, targets, args):
    # drawn on the CPU with torch's generator: no device sync, and saved with a checkpoint
    if torch.rand(()).item() >= args.cutmix_prob:
        return images, targets
    lam = torch.distributions.Beta(args.cutmix_alpha, args.cutmix_alpha).sample().item()
    h, w = images.shape[-2:]
    cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
    images, targets, _ = cutmix(images, targets, cutmix_box(h, w, lam, cy, cx))
    return images, targets


if __name__ == '__main__':
    common.main(sys.modules[__name__])
