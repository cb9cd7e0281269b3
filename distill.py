"""Knowledge distillation (Bag of Tricks, section 5.3, Eq. 6; Hinton et al. 2015).

A trained teacher's softened predictions become a second target. With student logits z,
teacher logits r, temperature T and the (possibly smoothed or mixed) target y:

    loss = a * CE(y, softmax(z)) + b * T^2 * KL(softmax(r / T) || softmax(z / T)),

a = --hard-weight and b = --soft-weight both 1 as in the paper's Eq. 6 (gluon-cv weighs them
0.5 and 0.5: half of it); T^2 keeps the soft term's gradients on the hard one's scale. The paper
writes the soft term as a cross-entropy, which differs from the KL by a constant (the teacher's
entropy). The teacher, trained on images prepared as the student's, sees the same (mixed) ones.

Flags: --teacher PATH (a run's model.pt or last.pt, or a torchvision state dict with
--teacher-arch), --temperature (default 20, the paper's), --hard-weight, --soft-weight. With
--val-split the teacher must have held out the same images (they select the student): it was
trained on the same files with the same --val-split.
Paper (ResNet-50-D student, ResNet-152-D teacher, on ImageNet): 78.31 -> 78.67 top-1
without mixup, 79.15 -> 79.29 with mixup (Table 6).
Measured here (docs/ablation-cpu.md, row distill: resnet20, CIFAR-10 (JPEG copy), 6 epochs,
batch 128, 4 seeds): 77.08 -> 80.16 top-1, +3.08 +- 0.74 (95% interval).

    python distill.py --teacher runs/baseline-resnet56-cifar10-s0/model.pt
"""
import sys

import torch
import torch.nn.functional as F

import common
import models
from support.flags import between
from support.teacher import check_teacher, load_teacher


def add_args(parser):
    parser.add_argument('--teacher', metavar='PATH', help="the teacher: a run's model.pt or last.pt (required)")
    parser.add_argument('--teacher-arch', choices=models.ARCHS, help='the arch, when --teacher is a state dict')
    # 0.01 and 1000 both train (1,024 CIFAR images, 2 epochs); 1e-200 overflows the logits / T, and 1e200 T^2
    parser.add_argument('--temperature', type=between(0.01, 1000, why=" (the paper's is 20)"), default=20.0,
                        help='T, 0.01 .. 1000 (default: %(default)s)')
    parser.add_argument('--hard-weight', type=common.at_least(0.0, float), default=1.0,
                        help='a, the weight of the loss on the target (default: %(default)s)')
    parser.add_argument('--soft-weight', type=common.at_least(0.0, float), default=1.0,
                        help="b, the weight of the loss on the teacher's predictions (default: %(default)s)")


def start(run):
    """Load the teacher once, beside the net but not saved with it (run.aside), if it saw what the student may."""
    if run.args.hard_weight == 0 and run.args.soft_weight == 0:
        common.fail("distill: --hard-weight 0 and --soft-weight 0 make the loss 0, and nothing would train: give "
                    "either a weight above 0")
    if not run.args.teacher:
        common.fail("distill: --teacher PATH is required (a model.pt, e.g. from python baseline.py --arch resnet56)")
    teacher, saved = load_teacher(run.args.teacher, run.args.teacher_arch, len(run.data.classes))
    check_teacher(saved, run)
    run.aside['teacher'] = teacher.to(run.device)


def loss(logits, targets, images, run):
    args = run.args
    with torch.no_grad():
        teacher_log_p = F.log_softmax(run.aside['teacher'](images).float() / args.temperature, 1)
    soft = F.kl_div(F.log_softmax(logits / args.temperature, 1), teacher_log_p, reduction='batchmean', log_target=True)
    return args.hard_weight * F.cross_entropy(logits, targets) + args.soft_weight * args.temperature ** 2 * soft


if __name__ == '__main__':
    common.main(sys.modules[__name__])
