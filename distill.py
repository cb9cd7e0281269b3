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

    python distill.py --teacher runs/baseline-resnet56-cifar10-s0/model.pt
"""
import functools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import common
import models
from support import archive


def add_args(parser):
    parser.add_argument('--teacher', metavar='PATH', help="the teacher: a run's model.pt or last.pt (required)")
    parser.add_argument('--teacher-arch', choices=models.ARCHS, help='the arch, when --teacher is a state dict')
    parser.add_argument('--temperature', type=common.positive_float, default=20.0, help='T (default: %(default)s)')
    parser.add_argument('--hard-weight', type=common.at_least(0.0, float), default=1.0,
                        help='a, the weight of the loss on the target (default: %(default)s)')
    parser.add_argument('--soft-weight', type=common.at_least(0.0, float), default=1.0,
                        help="b, the weight of the loss on the teacher's predictions (default: %(default)s)")


@functools.lru_cache(maxsize=2)
def load_teacher(path, arch, num_classes, device):
    """The teacher in eval mode with frozen weights, and its model.pt (None for a state dict)."""
    if not Path(path).exists():
        common.fail(f"distill: --teacher {path} does not exist")
    if arch:  # a torchvision state dict: the arch as torchvision lays it out (its resnet50 is a ResNet-B)
        teacher, saved = models.build(arch, num_classes, **models.TORCHVISION_LAYOUT.get(arch, {})), None
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:
            common.fail(f"distill: cannot read --teacher {path} ({str(e).splitlines()[0]})")
        if isinstance(state, dict) and ('arch' in state or 'optimizer' in state):
            common.fail(f"distill: {path} holds a training checkpoint, not a state dict: drop --teacher-arch")
        mismatch = models.first_mismatch(teacher.state_dict(), state)
        if mismatch:
            common.fail(f"distill: --teacher {path} does not fit {arch} with {num_classes} classes: {mismatch}")
        teacher.load_state_dict(state)
    else:
        saved = archive.load_model_file(path)
        teacher = archive.build_from_file(saved)
    return teacher.to(device).eval().requires_grad_(False), saved


def start(run):
    """Load the teacher now, and stop if it was trained on images prepared otherwise than the student's."""
    if not run.args.teacher:
        common.fail("distill: --teacher PATH is required (a model.pt, e.g. from python baseline.py --arch resnet56)")
    d = run.data
    _, saved = load_teacher(run.args.teacher, run.args.teacher_arch, len(d.classes), str(run.device))
    ours = {'classes': list(d.classes), 'image_size': d.image_size, 'mean': d.mean.flatten().tolist(),
            'std': d.std.flatten().tolist()}
    for key in ours if saved else ():  # a state dict (--teacher-arch) says nothing of its data
        if saved[key] != ours[key]:
            common.fail(f"distill: the teacher's {key} ({saved[key]}) is not the student's ({ours[key]}): "
                        "train the teacher on the student's data")
    split = run.args.val_split
    if split and (saved is None or 'data' not in saved):  # a state dict, or a model.pt from before fingerprints
        run.log(f"distill: cannot tell which images {run.args.teacher} was trained on: if it saw the student's "
                f"--val-split {split} images, val_acc flatters the student")
    elif split and saved['data']['val_split'] != split:
        common.fail(f"distill: the student selects on --val-split {split}, but the teacher was trained with "
                    f"--val-split {saved['data']['val_split']} (it has seen other or all of those images): train the "
                    f"teacher with --val-split {split} (tools/tune.py adds --val-split 0.1 to its trials)")
    elif split and saved['data']['digest'] != run.fingerprint['digest']:  # other files: other val images
        common.fail(f"distill: the student selects on --val-split {split} of its data, but the teacher was trained "
                    "on other files (it may have seen those images): train the teacher on the student's --data")


def loss(logits, targets, images, run):
    args = run.args
    teacher, _ = load_teacher(args.teacher, args.teacher_arch, targets.shape[1], str(images.device))
    with torch.no_grad():
        teacher_log_p = F.log_softmax(teacher(images).float() / args.temperature, 1)
    soft = F.kl_div(F.log_softmax(logits / args.temperature, 1), teacher_log_p, reduction='batchmean', log_target=True)
    return args.hard_weight * F.cross_entropy(logits, targets) + args.soft_weight * args.temperature ** 2 * soft


if __name__ == '__main__':
    common.main(sys.modules[__name__])
