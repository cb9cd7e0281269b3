"""The networks: `build(arch, num_classes, **options)`, `load_weights(model, weights)`, `init_xavier(model)`.

Every net remembers how it was built (`model.arch`, `model.options`), so a saved `model.pt`
rebuilds it without the run's flags.

Besides this repo's ResNets (CIFAR, ImageNet-style, SK), two of torchvision's nets for folder
data, built as torchvision builds them (efficientnet_b0 with its dropout 0.2 and stochastic
depth 0.2): EfficientNet-B0 (5,288,548 parameters with 1000 classes) and RegNetY-400MF
(4,344,144). The tricks' constructor switches (zero_init_residual, variant, norm) are made for
this repo's ResNets: on these two they stop with an error, never do nothing.
"""
import pickle
import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .cifar_resnet import DEPTHS, CifarResNet
from .evonorm import check_norm
from .resnet import LAYOUTS, ResNet
from .skresnet import LAYOUTS as SK_LAYOUTS

# torchvision's nets, by our arch name: what their blocks are (for the errors of the switches)
TORCHVISION_BLOCKS = {'efficientnet_b0': 'MBConv blocks (BN + SiLU, squeeze-excitation)',
                      'regnety_400mf': 'Y blocks (grouped 3x3 convs, squeeze-excitation)'}
# the archs torchvision has ImageNet weights for, and its names for them
TORCHVISION_NAMES = {'resnet18': 'resnet18', 'resnet34': 'resnet34', 'resnet50': 'resnet50',
                     'efficientnet_b0': 'efficientnet_b0', 'regnety_400mf': 'regnet_y_400mf'}
HEADS = {'efficientnet_b0': 'classifier.1.'}  # the classifier's prefix, where it is not 'fc.'
TORCHVISION_LAYOUT = {'resnet50': {'variant': 'B'}}  # the switches that give torchvision's layout (its ResNet-50 is a B)

CIFAR_ARCHS = tuple(DEPTHS)                     # 3x3 stem: for images of about 32 px
IMAGENET_ARCHS = tuple(LAYOUTS)                 # 7x7 stem + max-pool: for larger images
SK_ARCHS = tuple(SK_LAYOUTS)                    # the same, with Selective Kernel blocks
TORCHVISION_ARCHS = tuple(TORCHVISION_BLOCKS)   # for larger images too
ARCHS = CIFAR_ARCHS + IMAGENET_ARCHS + SK_ARCHS + TORCHVISION_ARCHS


def build(arch, num_classes, **options):
    """The net `arch` with `num_classes` outputs; options are constructor switches (variant, ...)."""
    if arch in DEPTHS:
        model = CifarResNet(DEPTHS[arch], num_classes, **options)
    elif arch in LAYOUTS or arch in SK_LAYOUTS:
        if arch in SK_LAYOUTS and options.get('variant'):
            raise ValueError(f"ResNet-{options['variant']} is not built for {arch}: its stem and shortcuts stay "
                             "ResNet-18/34's, so that it differs from resnet18/34 by its Selective Kernel units alone")
        block, layers = LAYOUTS.get(arch) or SK_LAYOUTS[arch]
        model = ResNet(block, layers, num_classes, **options)
    elif arch in TORCHVISION_BLOCKS:
        model = torchvision_net(arch, num_classes, **options)
    else:
        raise ValueError(f"unknown arch {arch!r} (choose from {', '.join(ARCHS)})")
    model.arch, model.options = arch, dict(options, num_classes=num_classes)
    return model


def torchvision_net(arch, num_classes, zero_init_residual=False, variant='', norm='bn'):
    """torchvision's net; every switch that is on stops, naming why."""
    check_norm(norm)
    switches = {'zero gamma': (zero_init_residual, "zeroes the last BN of this repo's ResNet blocks"),
                f'ResNet-{variant}': (variant, "changes the stem, strides and shortcuts of this repo's ResNets"),
                f'norm={norm!r}': (norm != 'bn', "replaces the BN + ReLU pairs of this repo's ResNets")}
    for trick, (on, what) in switches.items():
        if on:
            raise ValueError(f"{trick} does not apply to {arch}: it {what}, and {arch} is torchvision's net of "
                             f"{TORCHVISION_BLOCKS[arch]}, built as torchvision builds it")
    import torchvision
    with torch.device('cpu'):  # even under torch.device('meta'): RegNet computes its widths with tensors
        return getattr(torchvision.models, TORCHVISION_NAMES[arch])(num_classes=num_classes)


def size_options(arch, image_size):
    """The switches an arch takes for images of this size: this repo's ImageNet-style ResNets get
    the CIFAR stem (3x3, stride 1, no max-pool) for images up to 64 px."""
    return {'stem': 'cifar'} if arch in IMAGENET_ARCHS + SK_ARCHS and image_size <= 64 else {}


def rebuild(model, **changes):
    """A fresh net of the same arch with some constructor switches changed."""
    options = dict(model.options, **changes)
    return build(model.arch, options.pop('num_classes'), **options)


def read_file(path):
    """What torch.save wrote to `path`, tensors and plain Python values only (weights_only); a file it
    cannot read raises ValueError with the reason in words, not torch's advice to load it unsafely."""
    if Path(path).is_dir():
        raise ValueError("it is a folder")
    if not Path(path).exists():
        raise ValueError("there is no such file")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": noise above the line that says why
            warnings.simplefilter('ignore')
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL (\S+)', str(e))
        if found:  # a whole net pickled (torch.save(net, PATH)), or numpy arrays: objects, not only tensors
            raise ValueError(f"torch cannot read it: it pickles Python objects, not only tensors "
                             f"({found.group(1)})") from None
        raise ValueError("torch cannot read it: it is not a file torch.save wrote") from None
    except PermissionError as e:
        raise ValueError(f"it cannot be read ({e.strerror})") from None
    except Exception as e:  # a file cut short, text, an empty file: EOFError, OSError, RuntimeError, KeyError
        raise ValueError(f"torch cannot read it: it is not a file torch.save wrote, or one cut short "
                         f"({type(e).__name__})") from None


def load_weights(model, weights):
    """Load `weights` (a file, or a torchvision weight name such as IMAGENET1K_V1) by name.

    A classifier of another size (ImageNet's 1000 classes) is left as initialised; every other
    tensor must match. Returns a line saying what was loaded.
    """
    if Path(weights).exists() or weights.endswith(('.pt', '.pth')) or '/' in weights:  # a file, whatever its name
        try:
            state = read_file(weights)
        except ValueError as e:
            raise ValueError(f"--weights {weights}: {e}: give a state-dict file "
                             "(torch.save(net.state_dict(), PATH)) or a run's model.pt") from None
        source = weights
    else:  # a torchvision weight name: downloads to torch's cache the first time
        if model.arch not in TORCHVISION_NAMES:
            raise ValueError(f"--weights {weights}: no such file, and torchvision has no weights for {model.arch} "
                             f"(only for {', '.join(TORCHVISION_NAMES)}): give a state-dict file or a run's model.pt")
        import torchvision
        enum = torchvision.models.get_model_weights(TORCHVISION_NAMES[model.arch])
        if weights not in enum.__members__:
            raise ValueError(f"{weights} is not a torchvision weight name for {model.arch} "
                             f"(choose from {', '.join(enum.__members__)})")
        try:
            state = enum[weights].get_state_dict(progress=False)
        except OSError as e:  # offline (a URLError), a timeout, a full disk in torch's cache
            why = getattr(e, 'reason', None) or e.strerror or e
            raise ValueError(f"--weights {weights}: torchvision's {model.arch} weights could not be downloaded "
                             f"({why}): go online once (torch keeps them in its cache), or give --weights PATH, a "
                             f"local file: torch.save(torchvision.models.{TORCHVISION_NAMES[model.arch]}(weights="
                             f"'{weights}').state_dict(), PATH) where it is online") from None
        source = f"torchvision {model.arch} {weights}"
    if isinstance(state, dict) and 'arch' in state and ('state_dict' in state or 'model' in state):
        # a model.pt of this repo (or a last.pt, which holds the same): its weights, for the arch it was made for
        if state['arch'] != model.arch:
            raise ValueError(f"--weights {weights} is a model.pt of a {state['arch']}, and this run builds a "
                             f"{model.arch}: pass --arch {state['arch']} to start from it (evaluate.py tests it; "
                             "distill.py --teacher learns from it)")
        state = state['state_dict'] if 'state_dict' in state else state['model']
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights} is not a state dict of tensors: give a state-dict file (torch.save("
                         "net.state_dict(), PATH)) or a run's model.pt")
    own, prefix = model.state_dict(), HEADS.get(model.arch, 'fc.')
    head = {k for k in state if k.startswith(prefix) and k in own and state[k].shape != own[k].shape}
    missing = sorted(k for k in own if k not in state and k not in head)
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and k not in head and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{source} does not fit {model.arch} {model.options}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
    new_head = f", new {model.options['num_classes']}-class classifier" if head else ''
    return f"loaded {len(state) - len(head)} tensors from {source}{new_head}"


def first_mismatch(own, theirs):
    """The first way a state dict `theirs` does not fit the net whose state dict is `own`, in words; '' if it fits."""
    if not isinstance(theirs, dict) or not all(isinstance(v, torch.Tensor) for v in theirs.values()):
        return "it is not a state dict of tensors"
    for key, value in own.items():
        if key not in theirs:
            return f"it has no {key}, which the net needs"
        if theirs[key].shape != value.shape:
            return f"{key} is {' x '.join(map(str, theirs[key].shape))} there, {' x '.join(map(str, value.shape))} here"
    extra = [key for key in theirs if key not in own]
    return f"it has {extra[0]}, which the net lacks" if extra else ''


def init_xavier(model):
    """The paper's baseline init (Bag of Tricks, section 2.1), in place of the nets' own.

    Conv and linear weights ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Xavier uniform), their
    biases 0. BN gamma 1 and beta 0 is how every net here is built already, so norm layers are
    left as they are: where zero gamma set a gamma to 0, it stays 0. Call it on the final net,
    after the tricks' model hooks (they rebuild the net) and before --weights.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
