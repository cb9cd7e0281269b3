"""LSUV: layer-sequential unit-variance initialisation (Mishkin & Matas, "All you need is a good
init", ICLR 2016).

On the first training batch, before training starts: 1. orthonormal init of every conv and
linear weight (Saxe et al. 2014), biases 0; 2. from the input to the output, layer by layer:
forward the batch, measure the variance of that layer's output, divide its weight by the
output's std, until |var - 1| < --lsuv-tol or --lsuv-iters tries; the next layer then sees
unit-variance input. In train mode, the BN running statistics put back afterwards; from scratch
only (with --weights it stops). With BN after every conv the rescaling mostly matters where no
BN follows (the classifier, the residual branches at the start): expect a small effect here.

Flags: --lsuv-tol (default 0.1), --lsuv-iters (default 10).
Paper (CIFAR-10): LSUV matches or beats the other inits of nets without BN; with BN, about even.

    python lsuv.py --lsuv-tol 0.1
"""
import sys

import torch
import torch.nn as nn

import common


def add_args(parser):
    parser.add_argument('--lsuv-tol', type=common.positive_float, default=0.1,
                        help='accepted |output variance - 1| (default: %(default)s)')
    parser.add_argument('--lsuv-iters', type=common.at_least(1), default=10,
                        help='rescalings per layer at most (default: %(default)s)')


@torch.no_grad()
def lsuv_init(net, x, tol=0.1, iters=10):
    """Orthonormal init, then each conv/linear layer's weight scaled to unit output variance on x.

    Returns {layer name: output variance after the init}."""
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for _, m in layers:
        m.weight.copy_(nn.init.orthogonal_(torch.empty(m.weight.shape)))  # (channels_last weights too)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in bn.state_dict().items()} for bn in norms]
    variances, out = {}, {}
    for name, layer in layers:
        handle = layer.register_forward_hook(lambda m, i, o: out.update(y=o))  # the layer's output
        try:
            for _ in range(iters):
                net(x)
                var = out['y'].float().var().item()
                if abs(var - 1) < tol or var == 0:
                    break
                layer.weight.div_(var ** 0.5)
            net(x)
            variances[name] = out['y'].float().var().item()
        finally:
            handle.remove()
    for bn, state in zip(norms, saved):  # the init's forwards must not count as training
        bn.load_state_dict(state)
    return variances


def model(net, args):
    if args.weights:
        common.fail("lsuv: LSUV initialises a net from scratch and --weights would replace it: drop one of them")
    return net


def init(run):
    images, _ = next(common.train_batches(run, 0))
    variances = lsuv_init(run.net.train(), images, run.args.lsuv_tol, run.args.lsuv_iters)
    worst = max(variances.items(), key=lambda kv: abs(kv[1] - 1))
    run.log(f"lsuv: {len(variances)} layers at unit output variance (furthest: {worst[0]} {worst[1]:.3f})")
    if run.world > 1:  # every process must start from the same weights
        for p in run.net.parameters():
            torch.distributed.broadcast(p.data, 0)


if __name__ == '__main__':
    common.main(sys.modules[__name__])
