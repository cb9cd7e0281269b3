"""distill.py's teacher: loaded from a run's model.pt or last.pt, or a torchvision state dict (with
--teacher-arch), and refused where it was trained on images prepared otherwise than the student's, or
on the student's val images."""
from pathlib import Path

import models
from support import archive
from support.flags import fail


def load_teacher(path, arch, num_classes):
    """The teacher in eval mode with frozen weights, on the CPU, and its model.pt (None for a state dict)."""
    if not Path(path).exists():
        fail(f"distill: --teacher {path} does not exist")
    if not arch:
        saved = archive.load_model_file(path)
        return archive.build_from_file(saved).eval().requires_grad_(False), saved
    # a torchvision state dict: the arch as torchvision lays it out (its resnet50 is a ResNet-B)
    teacher = models.build(arch, num_classes, **models.TORCHVISION_LAYOUT.get(arch, {}))
    try:
        state = models.read_file(path)
    except ValueError as e:
        fail(f"distill: cannot read --teacher {path} ({e}): pass a state dict that torch.save wrote")
    if isinstance(state, dict) and ('arch' in state or 'optimizer' in state):
        fail(f"distill: {path} holds a training checkpoint, not a state dict: drop --teacher-arch")
    mismatch = models.first_mismatch(teacher.state_dict(), state)
    if mismatch:
        fail(f"distill: --teacher {path} does not fit {arch} with {num_classes} classes: {mismatch}")
    teacher.load_state_dict(state)
    return teacher.eval().requires_grad_(False), None


def check_teacher(saved, run):
    """Stop where the teacher (its model.pt, `saved`) saw images prepared otherwise than the student's, or,
    under --val-split, the student's val images."""
    data, split = run.data, run.args.val_split
    ours = {'classes': list(data.classes), 'image_size': data.image_size, 'mean': data.mean.flatten().tolist(),
            'std': data.std.flatten().tolist()}
    for key in ours if saved else ():  # a state dict (--teacher-arch) says nothing of its data
        if saved[key] != ours[key]:
            theirs, mine = shown(saved[key], ours[key])
            fail(f"distill: the teacher's {key} ({theirs}) is not the student's ({mine}): "
                 "train the teacher on the student's data")
    if split and (saved is None or 'data' not in saved):  # a state dict, or a model.pt from before fingerprints
        run.log(f"distill: cannot tell which images {run.args.teacher} was trained on: if it saw the student's "
                f"--val-split {split} images, val_acc flatters the student")
    elif split and saved['data']['val_split'] != split:
        fail(f"distill: the student selects on --val-split {split}, but the teacher was trained with "
             f"--val-split {saved['data']['val_split']} (it has seen other or all of those images): train the "
             f"teacher with --val-split {split} (tools/tune.py adds --val-split 0.1 to its trials)")
    elif split and saved['data']['digest'] != run.fingerprint['digest']:  # other files: other val images
        fail(f"distill: the student selects on --val-split {split} of its data, but the teacher was trained "
             "on other files (it may have seen those images): train the teacher on the student's --data")


def shown(theirs, ours, most=6):
    """The teacher's value and the student's as an error shows them: whole, but lists of more than `most` items
    (3,000 class names made a line of 27 KB) by their length and the first item in which they differ."""
    if not isinstance(theirs, list) or not isinstance(ours, list) or max(len(theirs), len(ours)) <= most:
        return theirs, ours
    i = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
    return tuple(f"{len(values)} items; #{i + 1}: {repr(values[i]) if i < len(values) else 'none'}"
                 for values in (theirs, ours))
