"""GHM-C: the gradient harmonizing classification loss (Li et al., "Gradient Harmonized
Single-stage Detector", AAAI 2019), adapted from binary to multi-class classification.

Cross-entropy's gradient on the logits is p - q (p the softmax, q the target). Its size,

    g = 0.5 * ||p - q||_1   in [0, 1],   which for a class-id target is 1 - p_y,

says how hard an example is. Easy examples (g ~ 0) are many and hard ones few; GHM-C weights
each example by the inverse density of its g in the batch, so that no band of difficulty
dominates the gradient: with M bins of g over [0, 1], R_j the (running) count of examples in
bin j and m the number of non-empty bins,

    loss = sum_i w_i CE_i / N,    w_i = N / (R_bin(i) * m),

R following each batch's counts with momentum (--ghm-momentum; the paper's 0.75). One bin is
plain cross-entropy. The weights carry no gradient. Defined through ||p - q||_1 it holds for
soft targets too, so it composes with label smoothing, mixup and CutMix (tested). The loss is
its own: with distill.py (another loss) it stops with an error naming both.

Flags: --ghm-bins (default 10), --ghm-momentum (default 0.75).
Paper: on COCO detection (RetinaNet) GHM-C matches or slightly beats the focal loss; no figure
for image classification is reported.

    python ghmc.py --ghm-bins 10
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import common


def add_args(parser):
    parser.add_argument('--ghm-bins', type=common.at_least(1), default=10, help='bins of g over [0, 1] (default: %(default)s)')
    parser.add_argument('--ghm-momentum', type=common.fraction, default=0.75,
                        help='momentum of the running bin counts (default: %(default)s)')
    parser.set_defaults(criterion=ghmc_loss)


class Density(nn.Module):
    """The running count per bin, kept beside the net so that last.pt saves it."""

    def __init__(self, bins, device):
        super().__init__()
        self.register_buffer('counts', torch.zeros(bins, device=device))
        self.register_buffer('seen', torch.zeros((), dtype=torch.bool, device=device))


density = None  # this run's Density, set up with the net below


def param_groups(groups, model, args):
    global density
    model.ghm_density = density = Density(args.ghm_bins, next(model.parameters()).device)
    return groups


def ghm_weights(g, bins, momentum, state=None):
    """Per-example weights N / (R_bin * m) for gradient sizes g in [0, 1]."""
    index = (g * bins).long().clamp_(max=bins - 1)
    counts = torch.zeros(bins, device=g.device).scatter_add_(0, index, torch.ones_like(g))  # no sync, unlike bincount
    if state is not None and momentum > 0:  # the first batch starts the running counts
        counts = torch.where(state.seen, momentum * state.counts + (1 - momentum) * counts, counts)
        state.counts.copy_(counts)
        state.seen.fill_(True)
    used = (counts > 0).sum()
    return len(g) / (counts[index] * used)


def ghmc_loss(logits, targets, images, args):
    log_p = F.log_softmax(logits, 1)
    q = targets if targets.ndim == 2 else F.one_hot(targets, logits.shape[1]).float()
    with torch.no_grad():
        g = 0.5 * (log_p.exp() - q).abs().sum(1)
        w = ghm_weights(g, args.ghm_bins, args.ghm_momentum, density)
    return (w * -(q * log_p).sum(1)).mean()


if __name__ == '__main__':
    common.main(sys.modules[__name__])
