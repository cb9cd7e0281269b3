"""EMA: evaluate an exponential moving average of the weights (Polyak & Juditsky 1992; as
timm's ModelEma and TensorFlow's ExponentialMovingAverage).

After every optimizer step the average follows the net, parameters and BN buffers alike:

    w_ema <- d_t w_ema + (1 - d_t) w,     d_t = min(d, (1 + t) / (10 + t))   (t = updates so far),

the second term a warmup of the decay, so the average leaves its random start quickly
(--no-ema-warmup turns it off: d_t = d). Both nets are evaluated every epoch: the log holds
test_acc (raw) and ema_test_acc; with --ema-eval the average is the run's result (test_acc,
final_test_acc) and the raw net's figures get the prefix raw_. model.pt keeps the average
under 'extra' (evaluate.py --ema tests it).

The default decay gives a half-life of 2% of the run's steps, at most timm's 0.9998 per step
(a half-life of 3466 steps, suited to runs of hundreds of thousands of steps): the average
must forget the early weights well before the end of a short run.

Flags: --ema-decay D, --no-ema-warmup, --ema-eval.
Reported: a standard part of timm's and EfficientNet's ImageNet recipes (decay 0.9998 -
0.9999); airbench94 uses a lookahead variant of it on CIFAR-10.

    python ema.py --ema-decay 0.999
"""
import argparse
import copy
import math
import sys

import torch
import torch.nn as nn

import common


def add_args(parser):
    parser.add_argument('--ema-decay', type=common.fraction, metavar='D',
                        help='decay per step (default: a half-life of 2%% of the run, at most 0.9998)')
    parser.add_argument('--ema-warmup', action=argparse.BooleanOptionalAction, default=True,
                        help='warm the decay up as min(d, (1 + t) / (10 + t)) (default: on)')
    parser.add_argument('--ema-eval', action='store_true', help='report the average as the run\'s result')
    parser.set_defaults(evaluate=evaluate)


def default_decay(total_steps):
    half_life = min(0.02 * total_steps, math.log(0.5) / math.log(0.9998))
    return 0.5 ** (1 / max(half_life, 1.0))


class EMA(nn.Module):
    """An averaged copy of a net, updated by update() after each optimizer step."""

    def __init__(self, net, decay, warmup):
        super().__init__()
        self.module = copy.deepcopy(net).eval().requires_grad_(False)
        self.register_buffer('updates', torch.zeros((), dtype=torch.long, device=next(net.parameters()).device))
        self.decay, self.warmup, self.pending, self.count = decay, warmup, False, None
        ours, theirs = self.module.state_dict(), net.state_dict()
        self.pairs = [(ours[k], theirs[k]) for k in ours]  # the same tensors for the whole run

    @torch.no_grad()
    def update(self):
        if self.count is None:  # read the saved count once (a fresh or resumed run), then count on the host
            self.count = int(self.updates)
        t = self.count
        d = min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay
        floats = [(a, b) for a, b in self.pairs if a.is_floating_point()]
        torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], 1 - d)
        for a, b in self.pairs:
            if not a.is_floating_point():
                a.copy_(b)
        self.updates += 1
        self.count += 1
        self.pending = False

    def forward(self, x):
        return self.module(x)


def param_groups(groups, model, args):
    # the net is final here (tricks applied, weights loaded): attach the average beside it, so it is
    # saved in last.pt with the net, and update it before each training forward, i.e. after each step
    decay = args.ema_decay if args.ema_decay is not None else default_decay(args.total_steps)
    model.ema = EMA(model, decay, args.ema_warmup)

    def before_forward(net, inputs):
        if net.training:
            if net.ema.pending:  # the step after the previous forward has been taken
                net.ema.update()
            net.ema.pending = True

    model.register_forward_pre_hook(before_forward)
    return groups


def evaluate(run, split, index, name, model=None):
    average = run.net.ema
    if average.pending:  # the last step of the epoch
        average.update()
    raw = common.evaluate(run, split, index, name)
    ema = common.evaluate(run, split, index, name, model=average)
    if run.args.ema_eval:
        return {**ema, **{f'raw_{k}': v for k, v in raw.items()}}
    return {**raw, **{f'ema_{k}': v for k, v in ema.items()}}


if __name__ == '__main__':
    common.main(sys.modules[__name__])
