"""Baseline: the plain training run, with no trick on.

The standard recipe (He et al. 2016 for CIFAR; Bag of Tricks section 2 for folder data):
SGD with momentum 0.9, lr 0.1 at batch 128, the lr x0.1 at 50% and 75% of training; pad-crop
+ flip for images up to 64 px, random-resized-crop + flip above. Weight decay 5e-4, as
kuangliu/pytorch-cifar uses for short CIFAR runs; He et al. used 1e-4 over 164 epochs (so do
gluon-cv and run_all.sh's `paper` preset: --weight-decay 1e-4).

    python baseline.py                            # CIFAR-10, ResNet-20, 30 epochs
    python baseline.py --data DIR --arch resnet50  # an ImageFolder tree
"""
import sys

import common

if __name__ == '__main__':
    common.main(sys.modules[__name__])
