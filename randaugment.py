"""RandAugment (Cubuk et al., "RandAugment: Practical automated data augmentation with a
reduced search space", CVPR Workshops 2020).

Each image gets N operations drawn uniformly from the 14 below, all at one magnitude M of 30,
with a random sign where the operation has one; the ranges are torchvision's (RandAugment with
num_magnitude_bins=31). Per image, but batched: each of the N layers draws an operation and a
sign for every image, then applies each (operation, sign) to all the images that drew it at
once, on uint8 tensors on the training device: no PIL, no per-image loop (cost: docs/speed.md).

Flags: --ra-n (default 2), --ra-m (default 9).
Paper: Wide-ResNet-28-2 on CIFAR-10, 94.9 -> 95.8%; ResNet-50 on ImageNet, 76.3 -> 77.6% top-1.

    python randaugment.py --ra-n 2 --ra-m 9
"""
import argparse
import functools
import math
import sys

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

import common
import augment

BINS = 31  # magnitudes 0 .. 30, as torchvision's default


def affine(img, shear=(0.0, 0.0), translate=(0, 0)):
    return TF.affine(img, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear), center=[0, 0])


GEOMETRIC = {  # name: op(images, magnitude), moving pixels (nearest neighbour, black where nothing lands)
    'shear_x': lambda img, m: affine(img, shear=(math.degrees(math.atan(m)), 0.0)),  # m: the factor
    'shear_y': lambda img, m: affine(img, shear=(0.0, math.degrees(math.atan(m)))),
    'translate_x': lambda img, m: affine(img, translate=(round(m * img.shape[-1]), 0)),
    'translate_y': lambda img, m: affine(img, translate=(0, round(m * img.shape[-2]))),
    'rotate': lambda img, m: TF.rotate(img, m),
}


def moved(name):
    """GEOMETRIC[name] as one gather through a map made once per magnitude, size and device: torchvision
    builds its sampling grid on the host and copies it to the GPU at every call, a sync each time."""
    def op(img, m):
        n, c, h, w = img.shape
        source = pixel_map(name, m, h, w, img.device)
        return F.pad(img.flatten(2), (1, 0)).index_select(2, source).view(n, c, h, w)  # 0 reads the black pad
    return op


@functools.lru_cache(maxsize=None)
def pixel_map(name, m, h, w, device):
    """Where each output pixel comes from (1 + its index; 0: nowhere): the op applied once, on the
    host, to an image of pixel numbers (nearest neighbour moves them as they are)."""
    numbers = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w)
    return augment.to_device(GEOMETRIC[name](numbers, m).round().long().flatten(), device)


def sharpness(img, m):
    """torchvision's adjust_sharpness(img, 1 + m): the blur (PIL's SMOOTH: ones around a five, over 13)
    from 9 shifted views, not a convolution, whose cuDNN autotuning would run for every new group size."""
    out = img.float()
    h, w = out.shape[-2:]
    inner = out[..., 1:-1, 1:-1]
    around = sum(out[..., i:i + h - 2, j:j + w - 2] for i in range(3) for j in range(3)) - inner
    blurred = (around * (1 / 13) + inner * (5 / 13)).round_()
    inner.add_(blurred.sub_(inner), alpha=-m)  # blend toward the blurred image by 1 - (1 + m)
    return out.clamp_(0, 255).to(torch.uint8)


OPS = {  # name: (op(uint8 images, magnitude), largest magnitude, signed)
    'identity': (lambda img, m: img, 0.0, False),
    'shear_x': (moved('shear_x'), 0.3, True),
    'shear_y': (moved('shear_y'), 0.3, True),
    'translate_x': (moved('translate_x'), 150 / 331, True),
    'translate_y': (moved('translate_y'), 150 / 331, True),
    'rotate': (moved('rotate'), 30.0, True),
    'brightness': (lambda img, m: TF.adjust_brightness(img, 1 + m), 0.9, True),
    'color': (lambda img, m: TF.adjust_saturation(img, 1 + m), 0.9, True),
    'contrast': (lambda img, m: TF.adjust_contrast(img, 1 + m), 0.9, True),
    'sharpness': (sharpness, 0.9, True),
    'posterize': (lambda img, m: TF.posterize(img, int(8 - round(m))), 4.0, False),
    'solarize': (lambda img, m: TF.solarize(img, 255 * (1 - m)), 1.0, False),
    'autocontrast': (lambda img, m: TF.autocontrast(img), 0.0, False),
    'equalize': (lambda img, m: TF.equalize(img), 0.0, False),
}


def add_args(parser):
    parser.add_argument('--ra-n', type=common.at_least(0), default=2, help='operations per image (default: %(default)s)')
    parser.add_argument('--ra-m', type=magnitude, default=9, help=f'magnitude, 0 .. {BINS - 1} (default: %(default)s)')


def magnitude(text):
    """--ra-m: refused above the top bin, not clamped to it (result.json would record a magnitude never used)."""
    value = int(text)
    if not 0 <= value < BINS:
        raise argparse.ArgumentTypeError(f"must be in 0 .. {BINS - 1}, got {text}")
    return value


magnitude.__name__ = 'int'  # argparse names it in "invalid int value: 'x'"


def rand_augment(images, n, magnitude, generator=None):
    """N random operations per image of a uint8 batch, grouped into batched calls.

    The draws are made on the host; the images that drew each (operation, sign) are found there
    too and sent to the device in one copy per layer, so nothing waits for the GPU."""
    ops = list(OPS.values())
    signed = torch.tensor([is_signed for _, _, is_signed in ops])
    m = [largest * min(magnitude, BINS - 1) / (BINS - 1) for _, largest, _ in ops]
    for _ in range(n):
        choice = torch.randint(len(ops), (len(images),), generator=generator)
        negative = torch.rand(len(images), generator=generator) < 0.5
        group = 2 * choice + (negative & signed[choice])  # an unsigned op ignores its sign
        order = augment.to_device(group.argsort(stable=True), images.device)
        out = images.clone()
        start = 0
        for g, count in enumerate(torch.bincount(group, minlength=2 * len(ops)).tolist()):  # on the host: no sync
            if count:
                idx = order[start:start + count]
                op, sign = ops[g // 2][0], -1 if g % 2 else 1
                out[idx] = op(images[idx], sign * m[g // 2])
                start += count
        images = out
    return images


def batch(images, targets, args):
    # RandAugment works on uint8 pixels: [0, 1] floats to 0..255 and back (exact for pad-crop data);
    # colour jitter and lighting may have stepped outside [0, 1]: clamped, not wrapped around
    pixels = images.clamp(0, 1).mul_(255).round_().to(torch.uint8)
    return rand_augment(pixels, args.ra_n, args.ra_m).float().div_(255), targets


if __name__ == '__main__':
    common.main(sys.modules[__name__])
