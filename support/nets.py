"""The net of a run: built for its data, changed by the tricks' model functions (two that change the
same switch of it cannot combine), then initialised (--init) or loaded (--weights)."""
import torch

import models
from support.flags import fail
from support.tricks import trick_name


def build_net(args, tricks, num_classes, log):
    """The net, changed by the tricks' model functions, then initialised or loaded with --weights."""
    try:
        torch.manual_seed(args.seed)
        net, changed_by = models.build(args.arch, num_classes, **models.size_options(args.arch, args.image_size)), {}
        for trick in [t for t in tricks if hasattr(t, 'model')]:
            before = dict(getattr(net, 'options', {}))
            torch.manual_seed(args.seed)  # a net rebuilt by a trick draws the same initial weights
            net = trick.model(net, args)
            for key in [k for k, v in getattr(net, 'options', {}).items() if before.get(k) != v]:
                if key in changed_by:
                    fail(f"{changed_by[key]}.py and {trick_name(trick)}.py both change the model's {key}: "
                         "they cannot be combined")
                changed_by[key] = trick_name(trick)
        if args.init == 'xavier':
            if args.weights:
                fail("--init xavier initialises a net from scratch and --weights would replace it: drop one of them")
            torch.manual_seed(args.seed)
            models.init_xavier(net)
        if args.weights:
            log(models.load_weights(net, args.weights))
    except (ValueError, OSError, RuntimeError) as e:
        fail(f"{e}")
    torch.manual_seed(args.seed + 1)  # what tricks draw while training does not depend on how the net was built
    return net
