"""GHM-C: the gradient harmonizing classification loss (Li et al., "Gradient Harmonized
Single-stage Detector", AAAI 2019), adapted from binary to multi-class classification.

Cross-entropy's gradient on the logits is p - q (p the softmax, q the target). Its size,

    g = 0.5 * ||p - q||_1   in [0, 1],   which for a one-hot target is 1 - p_y,

says how hard an example is. Easy examples (g ~ 0) are many and hard ones few; GHM-C weights
each example by the inverse density of its g, so that no band of difficulty dominates: with M
bins of g over [0, 1], R_j the running count of bin j and m the bins that hold examples,

    loss = sum_i w_i CE_i / N,    w_i = N / (R_bin(i) * m),
    R_j <- mu R_j + (1 - mu) (count of bin j in the batch), for the bins the batch fills,

as mmdet's GHMC: R starts at 0 and an empty bin keeps its count. One bin is cross-entropy. The
weights carry no gradient; through ||p - q||_1 it takes soft targets too (label smoothing,
mixup, CutMix). It replaces the loss, so it does not combine with distill.py.

Flags: --ghm-bins (default 10), --ghm-momentum (default 0.75, the paper's).
Paper: on COCO detection (RetinaNet) GHM-C matches or slightly beats the focal loss; no figure
for image classification.

    python ghmc.py --ghm-bins 10
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import common
from support.flags import whole_between


def add_args(parser):
    # more bins than a batch has examples leave most of them empty; 1e11 bins would not fit in memory
    parser.add_argument('--ghm-bins', type=whole_between(1, 1000), default=10,
                        help='bins of g over [0, 1], 1 .. 1000 (default: %(default)s)')
    parser.add_argument('--ghm-momentum', type=common.fraction, default=0.75,
                        help='momentum of the running bin counts (default: %(default)s)')


class Density(nn.Module):
    """The running count per bin, kept in run.extra so that last.pt saves it."""

    def __init__(self, bins, device):
        super().__init__()
        self.register_buffer('counts', torch.zeros(bins, device=device))


def start(run):
    run.extra['ghm_density'] = Density(run.args.ghm_bins, run.device)


def ghm_weights(g, bins, momentum, density=None):
    """Per-example weights N / (R_bin * m) for gradient sizes g in [0, 1]."""
    index = (g * bins).long().clamp_(max=bins - 1)
    counts = torch.zeros(bins, device=g.device).scatter_add_(0, index, torch.ones_like(g))  # no sync, unlike bincount
    filled = counts > 0
    if density is not None and momentum > 0:
        counts = torch.where(filled, momentum * density.counts + (1 - momentum) * counts, density.counts)
        density.counts.copy_(counts)
    return len(g) / (counts[index] * filled.sum())


def loss(logits, targets, images, run):
    log_p = F.log_softmax(logits, 1)
    with torch.no_grad():
        g = 0.5 * (log_p.exp() - targets).abs().sum(1)
        w = ghm_weights(g, run.args.ghm_bins, run.args.ghm_momentum, run.extra['ghm_density'])
    return (w * -(targets * log_p).sum(1)).mean()


if __name__ == '__main__':
    common.main(sys.modules[__name__])
