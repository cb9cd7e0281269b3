"""EvoNorm-S0 (Liu et al., "Evolving Normalization-Activation Layers", NeurIPS 2020).

Each BN and the ReLU after it become one layer whose statistics are each sample's own:

    y = x * sigmoid(v * x) / group_std(x) * gamma + beta,   group_std(x) = sqrt(Var(x) + eps)

the variance taken per sample over each group of C/G channels (G = 32, or fewer where the
layer has fewer channels) and all positions; v and gamma start at 1, beta at 0. A BN that no
ReLU follows (a block's last, a shortcut's) becomes y = x / group_std(x) * gamma + beta (timm's
is gamma x + beta alone: see models/evonorm.py). The
ReLU after each residual addition stays. Nothing depends on the batch (but for the BN of an
SK unit's attention, which stays): no running averages, the same function in training and at
test time, at any batch size.

No flag. For this repo's ResNets (CIFAR, resnet18/34/50, skresnet18/34); on torchvision's
nets it stops. From scratch only: torchvision's BN weights (--weights) do not fit its layers.
Paper: EvoNorms ahead of BN-ReLU on most of the image classifiers it tried (ResNets,
MobileNets, EfficientNets), and EvoNorm-S0 well ahead of BN-ReLU and GN-ReLU when the batch
per device is small (its Table 4), where BN's batch statistics are noisy.

    python evonorm.py
"""
import sys

import common
import models


def model(model, args):
    return models.rebuild(model, norm='evonorm')


if __name__ == '__main__':
    common.main(sys.modules[__name__])
