"""RandAugment (Cubuk et al., "RandAugment: Practical automated data augmentation with a
reduced search space", CVPR Workshops 2020).

Each image gets N operations drawn uniformly from the 14 below, all at one magnitude M of 30,
with a random sign where the operation has one; the ranges are torchvision's (RandAugment with
num_magnitude_bins=31). Per image, but batched: each of the N layers draws an operation and a
sign for every image, then applies each (operation, sign) to all the images that drew it at
once, on uint8 tensors on the training device: no PIL, no per-image loop (cost: docs/results.md).

Flags: --ra-n (default 2), --ra-m (default 9).
Paper: Wide-ResNet-28-2 on CIFAR-10, 94.9 -> 95.8%; ResNet-50 on ImageNet, 76.3 -> 77.6% top-1.

    python randaugment.py --ra-n 2 --ra-m 9
"""
import math
import sys

import torch
from torchvision.transforms.v2 import functional as TF

import common

BINS = 31  # magnitudes 0 .. 30, as torchvision's default


def affine(img, shear=(0.0, 0.0), translate=(0, 0)):
    return TF.affine(img, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear), center=[0, 0])


OPS = {  # name: (op(uint8 images, magnitude), largest magnitude, signed)
    'identity': (lambda img, m: img, 0.0, False),
    'shear_x': (lambda img, m: affine(img, shear=(math.degrees(math.atan(m)), 0.0)), 0.3, True),  # m: the factor
    'shear_y': (lambda img, m: affine(img, shear=(0.0, math.degrees(math.atan(m)))), 0.3, True),
    'translate_x': (lambda img, m: affine(img, translate=(round(m * img.shape[-1]), 0)), 150 / 331, True),
    'translate_y': (lambda img, m: affine(img, translate=(0, round(m * img.shape[-2]))), 150 / 331, True),
    'rotate': (lambda img, m: TF.rotate(img, m), 30.0, True),
    'brightness': (lambda img, m: TF.adjust_brightness(img, 1 + m), 0.9, True),
    'color': (lambda img, m: TF.adjust_saturation(img, 1 + m), 0.9, True),
    'contrast': (lambda img, m: TF.adjust_contrast(img, 1 + m), 0.9, True),
    'sharpness': (lambda img, m: TF.adjust_sharpness(img, 1 + m), 0.9, True),
    'posterize': (lambda img, m: TF.posterize(img, int(8 - round(m))), 4.0, False),
    'solarize': (lambda img, m: TF.solarize(img, 255 * (1 - m)), 1.0, False),
    'autocontrast': (lambda img, m: TF.autocontrast(img), 0.0, False),
    'equalize': (lambda img, m: TF.equalize(img), 0.0, False),
}


def add_args(parser):
    parser.add_argument('--ra-n', type=common.at_least(0), default=2, help='operations per image (default: %(default)s)')
    parser.add_argument('--ra-m', type=common.at_least(0), default=9,
                        help=f'magnitude, 0 .. {BINS - 1} (default: %(default)s)')


def rand_augment(images, n, magnitude, generator=None):
    """N random operations per image of a uint8 batch, grouped into batched calls."""
    ops = list(OPS.values())
    for _ in range(n):
        choice = torch.randint(len(ops), (len(images),), generator=generator)
        negative = torch.rand(len(images), generator=generator) < 0.5
        out = images.clone()
        for k, (op, largest, signed) in enumerate(ops):
            m = largest * min(magnitude, BINS - 1) / (BINS - 1)
            for sign in ((1, -1) if signed else (1,)):
                idx = ((choice == k) & (negative == (sign < 0))).nonzero().flatten()
                if len(idx):
                    idx = idx.to(images.device)
                    out[idx] = op(images[idx], sign * m)
        images = out
    return images


def batch(images, targets, args):
    # RandAugment works on uint8 pixels: [0, 1] floats to 0..255 and back (exact for pad-crop data);
    # colour jitter and lighting may have stepped outside [0, 1]: clamped, not wrapped around
    pixels = images.clamp(0, 1).mul_(255).round_().to(torch.uint8)
    return rand_augment(pixels, args.ra_n, args.ra_m).float().div_(255), targets


if __name__ == '__main__':
    common.main(sys.modules[__name__])
