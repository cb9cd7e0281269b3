"""Zero gamma (Bag of Tricks, section 3.1; Goyal et al. 2017).

A residual block outputs relu(x' + bn(z)), where x' is its shortcut and bn(z) = gamma * z_hat
+ beta is the BN after its last conv. Starting gamma = 0 in that BN of every block (beta is
0 already) makes every block return relu(x'): the net starts as a shallower one, which is
easier to train at first. Nothing else changes; the net draws the same initial weights.

No flag. From scratch only: with --weights it stops, as zeroing pretrained gammas would
destroy what the weights learned.
Paper (ResNet-50 on ImageNet, with warmup, Table 4): 76.03 -> 76.19 top-1 at batch 256 (+0.16),
75.93 -> 76.37 at batch 1024 (+0.44).
Measured here (docs/ablation-recipe.md, row zerogamma: resnet20, CIFAR-10 (JPEG copy), 30 epochs,
batch 128, 4 seeds): 85.87 -> 85.78 top-1, -0.09 +- 0.70 (95% interval: noise).
Measured here (docs/ablation-cpu.md, row zerogamma: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 128, 4 seeds): 77.08 -> 74.44 top-1, -2.64 +- 0.99 (95% interval).

    python zerogamma.py
"""
import sys

import common
import models


def model(model, args):
    if args.weights:
        common.fail("zerogamma: zero gamma initialises a net from scratch, and --weights would be "
                    "overwritten (or, loaded first, destroyed): drop one of them")
    return models.rebuild(model, zero_init_residual=True)


if __name__ == '__main__':
    common.main(sys.modules[__name__])
