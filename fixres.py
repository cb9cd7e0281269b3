"""FixRes: test at a higher resolution than you train at (Touvron et al., "Fixing the
train-test resolution discrepancy", NeurIPS 2019).

Random-resized-crop zooms in: an object fills more of a training crop than of the centre
crop at test time. Testing at a higher resolution than training makes the apparent object
sizes agree again:

    test size = --test-scale x training size     (default here 1.15; the loop's default is 1),

so a net trained at 224 px is tested at 258 px (the test images are stored at 8/7 of that and
centre-cropped). Optionally, fine-tune at the test resolution afterwards: --finetune trains only
the classifier and the BN layers (whose statistics shift with resolution), e.g.

    python fixres.py --data DIR --image-size 224                                  # train, test at 258
    python fixres.py --data DIR --finetune --weights runs/<that run>/model.pt --image-size 258 \\
        --test-scale 1 --epochs 2 --lr 0.001 --out runs/fixres-finetune           # fine-tune at 258

For folder data above 64 px (CIFAR images are tested whole).
Flags: --finetune (and the loop's --test-scale, whose default changes here).
Paper: a ResNet-50 trained at 224 px on ImageNet gains over a point of top-1 when tested at
a higher resolution, and more after the classifier + BN fine-tuning (its training recipe).
"""
import sys

import torch.nn as nn

import common


DEFAULTS = {'test_scale': 1.15}


def add_args(parser):
    parser.add_argument('--finetune', action='store_true',
                        help='train only the classifier and BN layers (start from --weights)')


def param_groups(groups, model, args):
    if not args.finetune:
        return groups
    if not args.weights:
        common.fail("fixres: --finetune adapts a trained net: give it one with --weights PATH (a run's model.pt)")
    keep = {id(p) for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.batchnorm._BatchNorm))
            for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [dict(g, params=[p for p in g['params'] if id(p) in keep]) for g in groups]


if __name__ == '__main__':
    common.main(sys.modules[__name__])
