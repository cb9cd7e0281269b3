"""No bias decay (Bag of Tricks, section 3.1; Jia et al. 2018).

Weight decay is an L2 penalty, lambda/2 ||w||^2, meant to keep weights small. Applied to
biases and to BN's gamma and beta it only shrinks what normalisation and shifts need, so
decay here falls on conv and linear weights alone: two parameter groups,

    conv/linear weights: weight_decay = --weight-decay;   biases, BN gamma/beta: weight_decay = 0.

No flag of its own.
Paper (ResNet-50 on ImageNet, on top of warmup and zero gamma, Table 4): 76.19 -> 76.16 top-1 at
batch 256 (-0.03), 76.37 -> 76.03 at batch 1024 (-0.34): it cost a little; the paper keeps it for its
stability.
Measured here (docs/ablation-recipe.md, row nobiasdecay: resnet20, CIFAR-10 (JPEG copy), 30 epochs,
batch 128, 4 seeds): 85.87 -> 85.82 top-1, -0.05 +- 0.65 (95% interval: noise).
Measured here (docs/ablation-cpu.md, row nobiasdecay: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 128, 4 seeds): 77.08 -> 76.61 top-1, -0.47 +- 0.48 (95% interval: noise).

    python nobiasdecay.py
"""
import sys

import torch.nn as nn

import common


def param_groups(groups, model, args):
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    split = []
    for group in groups:
        split.append(dict(group, params=[p for p in group['params'] if id(p) in decayed]))
        split.append(dict(group, params=[p for p in group['params'] if id(p) not in decayed], weight_decay=0.0))
    return [g for g in split if g['params']]


if __name__ == '__main__':
    common.main(sys.modules[__name__])
