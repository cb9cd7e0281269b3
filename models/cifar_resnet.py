"""CIFAR ResNet-20/32/44/56/110 (He et al., "Deep Residual Learning", CVPR 2016, section 4.2).

A 3x3 stem with 16 channels, three stages of n basic blocks (16, 32, 64 channels, strides
1, 2, 2), global average pooling and one linear layer: 6n + 2 layers.

Shortcuts: identity where the shape stays, a projection (1x1 conv with stride 2 + BN) where
it changes. The ResNet paper's CIFAR nets used option A instead (zero-padded identity, no
parameters); the projection is used here so that the ResNet-D tweak has a shortcut conv to
change. Parameter counts with these projection shortcuts (asserted in tests/test_models.py):
ResNet-20 272,474; ResNet-32 466,906; ResNet-44 661,338; ResNet-56 855,770; ResNet-110
1,730,714. The paper's option-A nets have ResNet-20 269,722 and ResNet-56 853,018.

Constructor switches for the tricks, all off by default:
- zero_init_residual: the gamma of each block's last BN starts at 0 (zerogamma.py).
- variant='C': the stem is three 3x3 convs at the first stage's width (resnet_d.py).
- variant='D': a downsampling shortcut averages 2x2 first, then a stride-1 1x1 conv
  (resnet_d.py; the "ResNet32D" of public CIFAR reproductions).
- norm='evonorm': every BN + ReLU pair becomes one EvoNorm-S0, every other BN (a block's
  last, a shortcut's) an EvoNorm-S0 without activation; the ReLU after a block's addition
  stays (evonorm.py). The 16-channel layers get 16 groups, of one channel each. ResNet-20
  272,474 -> 272,826, ResNet-56 855,770 -> 856,794: a v for each channel of the BN + ReLU
  pairs (352 in ResNet-20's 10 pairs); an EvoNorm-S0 without activation counts as a BN.
The CIFAR variants are not cumulative, and there is no 'B': a basic block has no strided
1x1 conv in its residual path to move the stride from. 'D' adds no parameter (ResNet-20-D
272,474; it even draws the same initial weights as ResNet-20); 'C' adds two 3x3 16->16 convs
and their BNs, 4,672 (ResNet-20-C 277,146, ResNet-56-C 860,442).
"""
import torch.nn as nn

from .evonorm import check_norm, norm_act, norm_only

DEPTHS = {'resnet20': 3, 'resnet32': 5, 'resnet44': 7, 'resnet56': 9, 'resnet110': 18}
VARIANTS = ('', 'C', 'D')


def conv_bn(cin, cout, kernel, stride=1, norm='bn'):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), norm_only(norm, cout)]


def conv_bn_relu(cin, cout, kernel, stride=1, norm='bn'):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), *norm_act(norm, cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, variant, norm):
        super().__init__()
        self.conv1, self.bn1, self.act1 = conv_bn_relu(cin, cout, 3, stride, norm)
        self.conv2, self.bn2 = conv_bn(cout, cout, 3, norm=norm)
        self.relu = nn.ReLU(inplace=True)  # after the addition, with either norm
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            if variant == 'D' and stride != 1:
                # ResNet-D: the strided 1x1 conv ignores 3/4 of its input; average first.
                pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                self.shortcut = nn.Sequential(pool, *conv_bn(cin, cout, 1, norm=norm))
            else:
                self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride, norm))

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth_n, num_classes=10, zero_init_residual=False, variant='', norm='bn'):
        super().__init__()
        check_norm(norm)
        if variant not in VARIANTS:
            hint = (" ResNet-B moves a bottleneck's stride from its 1x1 to its 3x3 conv, and"
                    " CIFAR ResNets have no bottleneck" if variant == 'B' else '')
            raise ValueError(f"variant {variant!r} does not exist for CIFAR ResNets (choose C or D).{hint}")
        widths = (16, 32, 64)
        if variant == 'C':  # ResNet-C: three 3x3 convs in place of the single 3x3 stem conv
            stem = conv_bn_relu(3, 16, 3, norm=norm) + conv_bn_relu(16, 16, 3, norm=norm)
            self.conv1 = nn.Sequential(*stem, nn.Conv2d(16, 16, 3, 1, 1, bias=False))
        else:
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1, self.act1 = norm_act(norm, 16)
        cin, stages = 16, []
        for i, width in enumerate(widths):
            blocks = []
            for j in range(depth_n):
                blocks.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1, variant, norm))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))
