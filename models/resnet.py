"""ImageNet-style ResNet-18/34/50 (He et al. 2016), with the paper's tweaks, and their CIFAR form.

Weight names match torchvision's `resnet18/34/50`, so a torchvision state dict loads by
name (`--weights PATH`, or a torchvision weight name where a download is possible).

Constructor switches for the tricks (Bag of Tricks, section 4; gluon-cv's resnet v1b/c/d):
- variant='' is the original ResNet: a downsampling bottleneck puts its stride on the first
  1x1 conv.
- variant='B' moves that stride to the 3x3 conv. torchvision's resnet50 already is a
  ResNet-B, so its weights belong with variant 'B'.
- variant='C' is B plus a deep stem: three 3x3 convs (32, 32, 64 channels) in place of the
  7x7 conv.
- variant='D' is C plus, in a downsampling shortcut, a 2x2 average pool (ceil_mode,
  count_include_pad=False) before a stride-1 1x1 conv: timm's resnet50d layout and weight names
  (a shortcut of stride 1, layer1.0's in a ResNet-50, holds an Identity where the pool goes).
- stem='cifar' (chosen for images up to 64 px) is the CIFAR ResNet of kuangliu/pytorch-cifar:
  the stem is one 3x3 conv of stride 1 and no max-pool, so a 32-px image reaches the first
  block whole (the ImageNet stem would leave 8x8). ResNet-18 has 11,173,962 parameters with 10
  classes. With 'C' and 'D' its deep stem has stride 1 too.
- zero_init_residual: the gamma of each block's last BN starts at 0 (zerogamma.py).
- norm='evonorm': every BN that a ReLU follows, and that ReLU, become one EvoNorm-S0 layer;
  every other BN (a block's last, a shortcut's) an EvoNorm-S0 without activation. The ReLU
  after a block's addition stays, as timm's ResNet blocks keep theirs with any norm layer
  (evonorm.py).
Basic blocks (ResNet-18/34) have no 1x1 conv in the residual path, so 'B' does not exist for
them; 'C' and 'D' change their stem and shortcuts as above.

Parameter counts (tests/test_models.py): ResNet-50 and ResNet-50-B 25,557,032 (torchvision
resnet50), ResNet-50-C and ResNet-50-D 25,576,264 (timm resnet50d;
the average pool has no parameters). With norm='evonorm' (tests/test_archs.py): ResNet-50
25,564,648 and ResNet-18 11,691,496: one v per channel of each BN + ReLU pair, 7,616 and 1,984
more (an EvoNorm-S0 without activation has a BN's parameter count).
"""
import torch.nn as nn

from .evonorm import check_norm, norm_act, norm_only

VARIANTS = ('', 'B', 'C', 'D')


def conv(cin, cout, kernel, stride=1):
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)


def shortcut(cin, cout, stride, variant, norm):
    if variant == 'D':
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride != 1 else nn.Identity()
        return nn.Sequential(pool, conv(cin, cout, 1), norm_only(norm, cout))
    return nn.Sequential(conv(cin, cout, 1, stride), norm_only(norm, cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, downsample, variant, norm):
        super().__init__()
        self.conv1, (self.bn1, self.act1) = conv(cin, width, 3, stride), norm_act(norm, width)
        self.conv2, self.bn2 = conv(width, width, 3), norm_only(norm, width)
        self.relu = nn.ReLU(inplace=True)  # after the addition, with either norm
        self.downsample = downsample

    def last_bn(self):
        return self.bn2

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, downsample, variant, norm):
        super().__init__()
        stride_1x1 = stride if variant == '' else 1  # ResNet-B and later: stride on the 3x3
        self.conv1, (self.bn1, self.act1) = conv(cin, width, 1, stride_1x1), norm_act(norm, width)
        self.conv2, (self.bn2, self.act2) = conv(width, width, 3, stride // stride_1x1), norm_act(norm, width)
        self.conv3, self.bn3 = conv(width, width * 4, 1), norm_only(norm, width * 4)
        self.relu = nn.ReLU(inplace=True)  # after the addition, with either norm
        self.downsample = downsample

    def last_bn(self):
        return self.bn3

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


LAYOUTS = {'resnet18': (BasicBlock, (2, 2, 2, 2)), 'resnet34': (BasicBlock, (3, 4, 6, 3)),
           'resnet50': (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, variant='', norm='bn',
                 stem='imagenet'):
        super().__init__()
        check_norm(norm)
        if stem not in ('imagenet', 'cifar'):
            raise ValueError(f"stem {stem!r} does not exist (choose imagenet or cifar)")
        first = 2 if stem == 'imagenet' else 1
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} does not exist (choose B, C or D)")
        if variant == 'B' and block is BasicBlock:
            raise ValueError("ResNet-B moves a bottleneck's stride from its 1x1 to its 3x3 conv;"
                             " ResNet-18/34 have basic blocks with no 1x1 conv (use C or D, or resnet50)")
        if variant in ('C', 'D'):  # deep stem, timm's names: conv1.0/.1/.3/.4/.6
            self.conv1 = nn.Sequential(conv(3, 32, 3, first), *norm_act(norm, 32),
                                       conv(32, 32, 3), *norm_act(norm, 32),
                                       conv(32, 64, 3))
        else:
            self.conv1 = conv(3, 64, 7, 2) if stem == 'imagenet' else conv(3, 64, 3)
        self.bn1, self.act1 = norm_act(norm, 64)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == 'imagenet' else nn.Identity()
        cin = 64
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or cin != width * block.expansion:
                    down = shortcut(cin, width * block.expansion, s, variant, norm)
                blocks.append(block(cin, width, s, down, variant, norm))
                cin = width * block.expansion
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, block):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
