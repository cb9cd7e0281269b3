"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", ICLR 2019), in place of SGD.

Adam scales each gradient by its running second moment. L2 decay added to the gradient gets
scaled too, so heavily-updated weights are barely decayed; AdamW decays the weights directly:

    w <- w - eta * (m_hat / (sqrt(v_hat) + eps) + lambda * w),    m, v: Adam's moments of the loss gradient alone.

Defaults for this setting: lr 1e-3, weight decay 0.05. Per step that is the same shrinkage
as the baseline's SGD (0.1 x 5e-4 = 1e-3 x 0.05 = 5e-5); betas (0.9, 0.999).
--adam gives plain Adam with the decay as L2 in the gradient, as the Intel reproduction
used; pass the L2 coefficient you want with it (that reproduction: --lr 1e-4 --weight-decay 1e-4).
Parameter groups keep their own decay, so nobiasdecay.py composes.

Flags: --adam (and the loop's --lr, --weight-decay, whose defaults change here).
Paper: on CIFAR-10 and ImageNet32 AdamW generalises clearly better than Adam with L2 and
closes most of its gap to SGD. The Intel reproduction (hoya012): pretrained ResNet-50
89.07 -> 94.13% test accuracy with Adam.

    python adamw.py --lr 1e-3 --weight-decay 0.05
"""
import sys

import torch

import common


DEFAULTS = {'lr': 1e-3, 'weight_decay': 0.05}


def add_args(parser):
    parser.add_argument('--adam', action='store_true', help='plain Adam with L2 decay instead of AdamW')


def optimizer(param_groups, args):
    if args.adam:  # decay as L2: added to the gradient, then scaled by Adam like the rest
        return torch.optim.Adam(param_groups, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.AdamW(param_groups, lr=args.lr, weight_decay=args.weight_decay)


if __name__ == '__main__':
    common.main(sys.modules[__name__])
