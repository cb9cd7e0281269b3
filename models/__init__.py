"""The networks: `build(arch, num_classes, **options)` and `load_weights(model, weights)`.

Every net remembers how it was built (`model.arch`, `model.options`), so a saved `model.pt`
rebuilds it without the run's flags.
"""
import torch

from .cifar_resnet import DEPTHS, CifarResNet
from .resnet import LAYOUTS, ResNet

CIFAR_ARCHS = tuple(DEPTHS)        # 3x3 stem: for images of about 32 px
IMAGENET_ARCHS = tuple(LAYOUTS)    # 7x7 stem + max-pool: for larger images
ARCHS = CIFAR_ARCHS + IMAGENET_ARCHS


def build(arch, num_classes, **options):
    """The net `arch` with `num_classes` outputs; options are constructor switches (variant, ...)."""
    if arch in DEPTHS:
        model = CifarResNet(DEPTHS[arch], num_classes, **options)
    elif arch in LAYOUTS:
        block, layers = LAYOUTS[arch]
        model = ResNet(block, layers, num_classes, **options)
    else:
        raise ValueError(f"unknown arch {arch!r} (choose from {', '.join(ARCHS)})")
    model.arch, model.options = arch, dict(options, num_classes=num_classes)
    return model


def rebuild(model, **changes):
    """A fresh net of the same arch with some constructor switches changed."""
    options = dict(model.options, **changes)
    return build(model.arch, options.pop('num_classes'), **options)


def load_weights(model, weights):
    """Load `weights` (a file, or a torchvision weight name such as IMAGENET1K_V1) by name.

    A classifier of another size (ImageNet's 1000 classes) is left as initialised; every other
    tensor must match. Returns a line saying what was loaded.
    """
    if weights.endswith(('.pt', '.pth')) or '/' in weights:
        state = torch.load(weights, map_location='cpu', weights_only=True)
        source = weights
    else:  # a torchvision weight name: downloads to torch's cache the first time
        import torchvision
        state = torchvision.models.get_weight(f"{model.arch.replace('resnet', 'ResNet')}_Weights.{weights}"
                                              ).get_state_dict(progress=False)
        source = f"torchvision {model.arch} {weights}"
    if isinstance(state, dict) and 'state_dict' in state and 'arch' in state:
        state = state['state_dict']  # a model.pt of this repo
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights} is not a state dict of tensors")
    own = model.state_dict()
    head = {k for k in state if k.startswith('fc.') and k in own and state[k].shape != own[k].shape}
    missing = sorted(k for k in own if k not in state and k not in head)
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and k not in head and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{source} does not fit {model.arch} {model.options}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    new_head = f", new {model.fc.out_features}-class classifier" if head else ''
    return f"loaded {len(state) - len(head)} tensors from {source}{new_head}"
