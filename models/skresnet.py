"""SK-ResNet-18/34 (Li et al., "Selective Kernel Networks", CVPR 2019), as timm's skresnet18/34.

A ResNet-18/34 (models/resnet.py: 7x7 stem, max-pool, basic blocks, the same weight names)
whose blocks open with a Selective Kernel unit in place of conv1 + bn1 + ReLU:

    split:  U1 = relu(bn(conv3x3(X))),  U2 = relu(bn(conv3x3 dilated 2 (X)))  (3x3 and 5x5 fields)
    fuse:   s = mean over H x W of (U1 + U2);  z = relu(bn(W s)),  W: C -> d = max(C / r, L)
    select: (a, b) = softmax over the two branches of (A z, B z),  A, B: d -> C
    output: V = a * U1 + b * U2  (per channel)

with r = 16, L = 32 (the paper's values), so d = 32 in every stage of these nets. As in timm,
each branch sees half of the input channels, so the two convs cost what one conv of ResNet-18
costs; the paper's SK units (in ResNeXt bottlenecks) feed the whole input to both. The
block's second 3x3 conv stays a plain conv + BN, the BN before the addition.

Parameter counts (tests/test_archs.py): SK-ResNet-18 11,878,184, SK-ResNet-34 22,168,744.
timm's skresnet18/34 (11,958,056 / 22,282,376) are this architecture with a wider attention,
d = C/8 rounded up to a multiple of 16 (16, 16, 32, 64 by stage): built with r=8, L=16, this
net has exactly timm's counts and, given timm's weights (renamed: paths.i.conv/bn ->
paths.i.0/1, attn.* -> *, conv2.conv/bn -> conv2/bn2; the 1x1-conv FCs flattened), computes
timm's outputs (to float32 rounding, in eval and in train mode).

Constructor switches: zero_init_residual zeroes the gamma of each block's last BN (bn2);
norm='evonorm' replaces the BNs as in models/resnet.py, except the attention's BN on the
pooled d-vector: EvoNorm-S0 there would take each sample's group statistics over d/32 = 1
value, a variance of 0. variant stops with an error (models/__init__.py).
"""
import torch
import torch.nn as nn

from .evonorm import norm_act
from .resnet import BasicBlock


class SelectiveKernel(nn.Module):
    def __init__(self, cin, cout, stride, norm, r=16, L=32):
        super().__init__()
        # the 5x5 branch is a 3x3 conv with dilation 2: the same field for 9 weights, not 25
        self.paths = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin // 2, cout, 3, stride, dilation, dilation, bias=False), *norm_act(norm, cout))
            for dilation in (1, 2))
        d = max(cout // r, L)
        self.fc_reduce = nn.Linear(cout, d, bias=False)
        self.bn = nn.BatchNorm1d(d)
        self.relu = nn.ReLU(inplace=True)
        self.fc_select = nn.Linear(d, 2 * cout, bias=False)  # the paper's A and B, one FC per branch, stacked

    def forward(self, x):
        u = torch.stack([path(half) for path, half in zip(self.paths, x.chunk(2, 1))], 1)  # N, 2, C, H, W
        z = self.relu(self.bn(self.fc_reduce(u.sum(1).mean((2, 3)))))
        attention = self.fc_select(z).view(len(x), 2, -1).softmax(1)
        return (u * attention[..., None, None]).sum(1)


class SKBlock(BasicBlock):
    """ResNet-18/34's basic block, its conv1 + bn1 + ReLU replaced by one Selective Kernel unit."""

    def __init__(self, cin, width, stride, downsample, variant, norm):
        super().__init__(cin, width, stride, downsample, variant, norm)
        self.conv1, self.bn1, self.act1 = SelectiveKernel(cin, width, stride, norm), nn.Identity(), nn.Identity()


LAYOUTS = {'skresnet18': (SKBlock, (2, 2, 2, 2)), 'skresnet34': (SKBlock, (3, 4, 6, 3))}
