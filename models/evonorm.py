"""EvoNorm-S0 (Liu et al., "Evolving Normalization-Activation Layers", NeurIPS 2020).

One layer in place of a BN and the ReLU after it, with statistics of each sample alone (no
batch statistics, no running averages):

    y = x * sigmoid(v * x) / group_std(x) * gamma + beta

group_std(x) = sqrt(Var(x) + eps), the variance taken per sample over each group of C/G
channels and all H x W positions (as GroupNorm, but x is not centred). Without the activation
(apply_act=False, in place of a BN that no ReLU follows): y = x / group_std(x) * gamma + beta.
That keeps a normalisation where the net had one; timm's EvoNorm2dS0 with apply_act=False is
gamma * x + beta alone (no division), and the paper defines S0 only with its activation, so the
choice here is this repo's: a net built with norm='evonorm' differs from timm's in those layers.
v and gamma start at 1, beta at 0, all of shape (1, C, 1, 1); gamma and beta are named
`weight` and `bias` as in a BN (and in timm), so zero gamma (`last_bn().weight`) works on
either norm. A layer without activation has no v (an unused parameter would
stop DistributedDataParallel).

`norm_act` and `norm_only` give the nets their layers for `norm='bn'` (BN + ReLU, BN: the
default nets, unchanged) or `norm='evonorm'`.
"""
import torch
import torch.nn as nn

NORMS = ('bn', 'evonorm')


class EvoNormS0(nn.Module):
    def __init__(self, channels, groups=32, apply_act=True, eps=1e-5):
        super().__init__()
        groups = min(groups, channels)
        while channels % groups:  # the largest group count up to `groups` that divides the channels
            groups -= 1
        self.groups, self.apply_act, self.eps = groups, apply_act, eps
        self.v = nn.Parameter(torch.ones(1, channels, 1, 1)) if apply_act else None
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        n, c = x.shape[:2]
        # the variance in fp32: under autocast x is half precision, too coarse for a sum of squares
        var = x.float().reshape(n, self.groups, -1).var(-1, unbiased=False, keepdim=True)
        std = var.add(self.eps).sqrt().expand(n, self.groups, c // self.groups).reshape(n, c, 1, 1).to(x.dtype)
        num = x * torch.sigmoid(self.v * x) if self.apply_act else x
        return num / std * self.weight + self.bias  # per-channel std: keeps x's memory format

    def extra_repr(self):
        return f"{self.weight.shape[1]}, groups={self.groups}, apply_act={self.apply_act}, eps={self.eps}"


def check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r} does not exist (choose bn or evonorm)")


def norm_act(norm, channels):
    """The norm after a conv that a ReLU follows, and that ReLU: (BN, ReLU) or (EvoNorm-S0, nothing)."""
    if norm == 'evonorm':
        return EvoNormS0(channels), nn.Identity()  # its activation is built in
    return nn.BatchNorm2d(channels), nn.ReLU(inplace=True)


def norm_only(norm, channels):
    """The norm after a conv that no ReLU follows (a block's last, a shortcut's): BN, or EvoNorm-S0 without act."""
    return EvoNormS0(channels, apply_act=False) if norm == 'evonorm' else nn.BatchNorm2d(channels)
