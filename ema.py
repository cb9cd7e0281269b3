"""EMA: evaluate an exponential moving average of the weights (Polyak & Juditsky 1992; timm's
ModelEma). After every optimizer step the average follows the net, parameters and BN buffers:

    w_ema <- d_t w_ema + (1 - d_t) w,     d_t = min(d, (1 + t) / (10 + t))   (t = updates so far),

the second term a warmup of the decay (--no-ema-warmup: d_t = d); the default d, a half-life
of 2% of the run's steps (at most timm's 0.9998), forgets the early weights well before a short
run ends. Both nets are evaluated every epoch (test_acc and ema_test_acc; with --ema-eval the
average's figures are the result, the raw net's get the prefix raw_); model.pt keeps the average
under 'extra' (evaluate.py --ema tests it).

Flags: --ema-decay D, --no-ema-warmup, --ema-eval.
Reported: part of timm's and EfficientNet's ImageNet recipes (decay 0.9998 - 0.9999).

    python ema.py --ema-decay 0.999
"""
import copy
import math
import sys

import torch
import torch.nn as nn

import common


def add_args(parser):
    parser.add_argument('--ema-decay', type=common.fraction, metavar='D',
                        help='decay per step (default: a half-life of 2%% of the run, at most 0.9998)')
    parser.add_argument('--no-ema-warmup', dest='ema_warmup', action='store_false',
                        help='a constant decay d, not min(d, (1 + t) / (10 + t))')
    parser.add_argument('--ema-eval', action='store_true', help="report the average as the run's result")


def default_decay(total_steps):
    half_life = min(0.02 * total_steps, math.log(0.5) / math.log(0.9998))
    return 0.5 ** (1 / max(half_life, 1.0))


class EMA(nn.Module):
    """An averaged copy of a net; update() after each optimizer step."""

    def __init__(self, net, decay, warmup):
        super().__init__()
        self.module = copy.deepcopy(net).eval().requires_grad_(False)
        self.register_buffer('updates', torch.zeros((), dtype=torch.long))  # on the CPU: read with no device sync
        self.decay, self.warmup = decay, warmup
        pairs = list(zip(self.module.state_dict().values(), net.state_dict().values()))
        self.floats = [pair for pair in pairs if pair[0].is_floating_point()]
        self.counts = [pair for pair in pairs if not pair[0].is_floating_point()]  # BN's batch counts: copied

    @torch.no_grad()
    def update(self):
        t = int(self.updates)
        d = min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay
        torch._foreach_lerp_([a for a, _ in self.floats], [b for _, b in self.floats], 1 - d)
        for a, b in self.counts:
            a.copy_(b)
        self.updates += 1


def start(run):
    decay = run.args.ema_decay if run.args.ema_decay is not None else default_decay(run.total_steps)
    run.extra['ema'] = EMA(run.net, decay, run.args.ema_warmup)


def after_step(run):
    run.extra['ema'].update()


def evaluate(run, split, index, name):
    raw = common.evaluate(run, split, index, name)
    ema = common.evaluate(run, split, index, name, net=run.extra['ema'].module)
    if run.args.ema_eval:
        return {**ema, **{f'raw_{k}': v for k, v in raw.items()}}
    return {**raw, **{f'ema_{k}': v for k, v in ema.items()}}


if __name__ == '__main__':
    common.main(sys.modules[__name__])
