"""LSUV: layer-sequential unit-variance initialisation (Mishkin & Matas, "All you need is a good
init", ICLR 2016).

Two steps, on the first training batch:
1. orthonormal init of every conv and linear weight (Saxe et al. 2014), biases 0;
2. from the input to the output, layer by layer: forward the batch, measure the variance of
   that layer's output, divide its weight by the output's std, until |var - 1| < --lsuv-tol or
   --lsuv-iters tries; the next layer then sees unit-variance input.

It needs data, so it runs on the first training batch the net sees (a one-shot hook before
that forward), in train mode, with the BN running statistics put back afterwards. On a resumed
run the checkpoint's weights are kept. From scratch only: with --weights it stops.
With BN after every conv the rescaling mostly matters where no BN follows (the classifier,
and the residual branches' scale at the start), so expect a small effect on these nets.

Flags: --lsuv-tol (default 0.1), --lsuv-iters (default 10).
Paper (plain nets without BN, CIFAR-10): LSUV matches or beats BN-free baselines; with BN,
similar accuracy to standard inits.

    python lsuv.py --lsuv-tol 0.1
"""
import sys
from pathlib import Path

import torch
import torch.nn as nn

import common


def add_args(parser):
    parser.add_argument('--lsuv-tol', type=common.positive_float, default=0.1,
                        help='accepted |output variance - 1| (default: %(default)s)')
    parser.add_argument('--lsuv-iters', type=common.at_least(1), default=10,
                        help='rescalings per layer at most (default: %(default)s)')


@torch.no_grad()
def lsuv_init(model, x, tol=0.1, iters=10):
    """Orthonormal init, then scale each conv/linear layer's weight to unit output variance on x.

    Returns {layer name: output variance after the init}."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for _, m in layers:
        m.weight.copy_(nn.init.orthogonal_(torch.empty(m.weight.shape)))  # (works for channels_last weights too)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in bn.state_dict().items()} for bn in norms]
    variances = {}
    for name, layer in layers:
        out = {}
        handle = layer.register_forward_hook(lambda m, i, o: out.update(y=o))
        try:
            for _ in range(iters):
                model(x)
                var = out['y'].float().var().item()
                if abs(var - 1) < tol or var == 0:
                    break
                layer.weight.div_(var ** 0.5)
            model(x)
            variances[name] = out['y'].float().var().item()
        finally:
            handle.remove()
    for bn, state in zip(norms, saved):  # the init's forwards must not count as training
        bn.load_state_dict(state)
    return variances


def model(model, args):
    if args.weights:
        common.fail("lsuv: LSUV initialises a net from scratch and --weights would replace it: drop one of them")
    if args.resume and (Path(args.out) / 'last.pt').exists():
        return model  # the checkpoint holds the weights

    def on_first_batch(net, inputs):
        if net is not model or not net.training:  # e.g. a copy of the net made by ema.py
            return
        handle.remove()
        variances = lsuv_init(net, inputs[0], args.lsuv_tol, args.lsuv_iters)
        worst = max(variances.items(), key=lambda kv: abs(kv[1] - 1))
        print(f"lsuv: {len(variances)} layers at unit output variance (furthest: {worst[0]} {worst[1]:.3f})")
        if torch.distributed.is_initialized():  # every process must start from the same weights
            for p in net.parameters():
                torch.distributed.broadcast(p.data, 0)

    handle = model.register_forward_pre_hook(on_first_batch)
    return model


if __name__ == '__main__':
    common.main(sys.modules[__name__])
