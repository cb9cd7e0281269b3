"""Knowledge distillation (Bag of Tricks, section 5.3; Hinton et al. 2015).

A trained teacher's softened predictions become a second target. With student logits z,
teacher logits r, temperature T and the (possibly smoothed or mixed) target y:

    loss = w * CE(y, softmax(z)) + (1 - w) * T^2 * KL(softmax(r / T) || softmax(z / T)),

w = --hard-weight; T^2 keeps the soft term's gradients on the scale of the hard one. The
paper writes the soft term as a cross-entropy: it differs from the KL by the teacher's
entropy, a constant, so the gradients are the same, and the KL is 0 at its minimum (student
= teacher). The teacher sees the same (mixed) images, in eval mode, under no_grad.

Flags: --teacher PATH (a model.pt of any script here, or a state dict with --teacher-arch),
--temperature (default 20, the paper's), --hard-weight (default 0.5, gluon-cv's).
Paper (ResNet-50-D student, ResNet-152-D teacher, on ImageNet): 78.31 -> 78.67 top-1
without mixup, 79.15 -> 79.29 with mixup (Table 6).

    python distill.py --teacher runs/baseline-resnet56-cifar10-s0/model.pt
"""
import functools
import sys

import torch
import torch.nn.functional as F

import common
import models


def add_args(parser):
    parser.add_argument('--teacher', metavar='PATH', help="the teacher: a run's model.pt (required)")
    parser.add_argument('--teacher-arch', choices=models.ARCHS, help='the arch, when --teacher is a plain state dict')
    parser.add_argument('--temperature', type=common.positive_float, default=20.0, help='T (default: %(default)s)')
    parser.add_argument('--hard-weight', type=common.unit_interval, default=0.5,
                        help='w, the weight of the true-label loss; 1 - w goes to the teacher (default: %(default)s)')
    parser.set_defaults(criterion=distillation_loss)


@functools.lru_cache(maxsize=2)
def load_teacher(path, arch, num_classes, device):
    """The teacher in eval mode with frozen weights, built from a model.pt or a state dict."""
    try:
        saved = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        common.fail(f"distill: cannot read --teacher {path} ({e})")
    if 'state_dict' in saved and 'arch' in saved:  # a model.pt of this repo
        options = dict(saved['options'])
        if arch and arch != saved['arch']:
            common.fail(f"distill: --teacher {path} is a {saved['arch']}, not --teacher-arch {arch}")
        arch, state = saved['arch'], saved['state_dict']
    elif arch:
        options, state = {'num_classes': num_classes}, saved
    else:
        common.fail(f"distill: --teacher {path} is a plain state dict: say its --teacher-arch")
    if options['num_classes'] != num_classes:
        common.fail(f"distill: the teacher has {options['num_classes']} classes, this data set {num_classes}")
    teacher = models.build(arch, **options)
    try:
        teacher.load_state_dict(state)
    except RuntimeError as e:
        common.fail(f"distill: --teacher {path} does not fit {arch} ({str(e).splitlines()[0]})")
    return teacher.to(device).eval().requires_grad_(False)


def model(model, args):
    if not args.teacher:
        common.fail("distill: --teacher PATH is required (a model.pt, e.g. from python baseline.py --arch resnet56)")
    load_teacher(args.teacher, args.teacher_arch, args.num_classes, 'cpu')  # fail now, not at the first step
    return model


def distillation_loss(logits, targets, images, args):
    teacher = load_teacher(args.teacher, args.teacher_arch, args.num_classes, str(images.device))
    with torch.no_grad():
        teacher_logits = teacher(images).float()
    t = args.temperature
    soft = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction='batchmean', log_target=True)
    return args.hard_weight * F.cross_entropy(logits, targets) + (1 - args.hard_weight) * t * t * soft


if __name__ == '__main__':
    common.main(sys.modules[__name__])
