"""Fine-tune an ImageNet-pretrained ResNet on folder data (transfer learning; the Intel
reproduction's "pretrained" row).

The net starts from torchvision's ImageNet weights: by name (--weights IMAGENET1K_V1, the
default here, downloaded once to torch's cache) or from a file offline (--weights PATH, a
torchvision-format state dict, e.g. saved with torch.save(torchvision.models.resnet50(
weights='IMAGENET1K_V1').state_dict(), PATH)). The 1000-class classifier is replaced by a
fresh one for the data set's classes; everything else is kept and trained at a lr 10x lower
than from scratch (--lr 0.01). torchvision's ResNet-50 is a ResNet-B (stride on the 3x3
conv), so a resnet50 is built as variant B to match its weights.

Zero gamma is refused here (zerogamma.py stops: it would wipe pretrained BN weights), and so is
ResNet-C/D (their stems and shortcuts have no torchvision weights).

Flags: the loop's --weights and --lr, whose defaults change here; --arch resnet18/34/50,
efficientnet_b0, regnety_400mf.
Reported (Intel Image Classification, ResNet-50, hoya012's table): from scratch 86.47,
pretrained 89.07% test accuracy.

    python pretrained.py --data intel --arch resnet50
"""
import sys

import common
import models


DEFAULTS = {'weights': 'IMAGENET1K_V1', 'lr': 0.01}


def model(model, args):
    if model.arch not in models.TORCHVISION_NAMES:
        common.fail(f"pretrained: there are ImageNet weights for {', '.join(models.TORCHVISION_NAMES)} only, "
                    f"not {model.arch}: pick one with --arch (folder data above 64 px)")
    layout = models.TORCHVISION_LAYOUT.get(model.arch)  # torchvision's resnet50 is a ResNet-B
    return models.rebuild(model, **layout) if layout else model


if __name__ == '__main__':
    common.main(sys.modules[__name__])
