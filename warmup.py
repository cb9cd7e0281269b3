"""Learning-rate warmup (Bag of Tricks, section 3.1; Goyal et al. 2017).

At the start the weights are random and a large lr can throw training off. Linear warmup
grows the lr over the first W iterations (W = warmup_epochs x steps per epoch):

    eta_t = eta * (t + 1) / W    for t = 0 .. W-1,   then the schedule over the remaining steps,

so the first step already trains (eta / W > 0) and step W-1 runs at the full eta. Stepped per
iteration, never per epoch. The schedule after it (the baseline's step decay, or cosine.py's
cosine) starts at the peak and spans the steps after the warmup: the step decay's milestones
are fractions of those steps (gluon-cv keeps absolute epochs: with 5 of 200 epochs of warmup,
0.5 falls at epoch 102.5 here, 100 there).

Flag: --warmup-epochs E (default 5, but never more than 10% of a shorter run).
Paper (ResNet-50 on ImageNet, Table 4): 75.87 -> 76.03 top-1 at batch 256 (+0.16), 75.17 -> 75.93
at batch 1024 (+0.76), where a large lr makes the first steps hardest.
Measured here (docs/ablation-recipe.md, row warmup: resnet20, CIFAR-10 (JPEG copy), 30 epochs,
batch 128, 4 seeds): 85.87 -> 86.03 top-1, +0.16 +- 0.33 (95% interval: noise).
Measured here (docs/ablation-cpu.md, row warmup: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 128, 4 seeds): 77.08 -> 77.87 top-1, +0.79 +- 0.61 (95% interval).

    python warmup.py --warmup-epochs 5
"""
import sys

import common


def add_args(parser):
    parser.add_argument('--warmup-epochs', type=common.at_least(0.0, float), metavar='E',
                        help='epochs of linear warmup (default: 5, or 10%% of a run shorter than 50 epochs)')


def warmup_steps(total_steps, args):
    epochs = args.warmup_epochs if args.warmup_epochs is not None else min(5.0, 0.1 * args.epochs)
    if epochs >= args.epochs:
        common.fail(f"--warmup-epochs {epochs:g}: the run has {args.epochs} epochs; the warmup must end before it does")
    return max(1, round(epochs / args.epochs * total_steps))


if __name__ == '__main__':
    common.main(sys.modules[__name__])
