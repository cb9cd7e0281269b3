"""The CUDA graph's bookkeeping on the CPU: static buffers, the lr in a tensor, the fused optimizer
set again after --resume, the loss list. Only the capture needs a GPU (tests/test_gpu.py)."""
from types import SimpleNamespace

import pytest
import torch

import adamw
import baseline
import common
import cosine
import ema
import ghmc
import mixup
from conftest import interrupted_in_epoch_2
from support import cuda_graph

STEPS = 6  # 2 epochs of 3 steps on the synthetic folder


@pytest.fixture
def bookkeeping(monkeypatch):
    """Runs built after this take the graphed step's path on the CPU, without the capture."""
    monkeypatch.setattr(cuda_graph, 'plan', lambda run: (False, 'eager (the graph bookkeeping, test)'))


def train(run, steps=STEPS):
    losses = []
    for epoch in range(steps // run.steps_per_epoch):
        stats, _ = common.train_epoch(run, epoch)
        losses.append(stats[0].item())
    return losses


def weights(run):
    return {k: v.clone() for k, v in {**run.net.state_dict(), **run.extra.state_dict()}.items()}


def same_weights(a, b, tolerance):
    """Each tensor within `tolerance` of its size (Adam moves weights near 0 by its lr, whatever their value)."""
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key].float() - b[key].float()).norm() <= tolerance * a[key].float().norm(), key


def tolerance(script):
    """Fused Adam rounds a tensor lr otherwise than a float one, and fused SGD and Adam their float lr otherwise
    than foreach: 1e-7 a step, which Adam amplifies in the BN biases near 0 (after 6 steps 1e-4 of their size on
    one CPU, 1e-2 on another). A step too many moves each by about the lr, half their size."""
    return 5e-2 if script is adamw else 1e-6


@pytest.mark.parametrize('script, flags', [(baseline, ()), (adamw, ()), (mixup, ()), (ema, ()), (ghmc, ()),
                                           (cosine, ('--with', 'warmup', 'labelsmooth', '--nesterov'))],
                         ids=['baseline', 'adamw', 'mixup', 'ema', 'ghmc', 'warmup+cosine+ls'])
def test_the_bookkeeping_trains_as_the_plain_eager_step(script, flags, run_args, monkeypatch):
    argv = run_args('--epochs', '2', *flags)
    plain = common.prepare(script, argv)
    for group in plain.optimizer.param_groups:  # the same fused optimizer, with a float lr
        group['fused'] = True
    plain_losses = train(plain)
    monkeypatch.setattr(cuda_graph, 'plan', lambda run: (False, 'eager (test)'))
    booked = common.prepare(script, argv)
    assert isinstance(booked.graph, cuda_graph.GraphedStep) and booked.graph.graph is None  # never captured
    booked_losses = train(booked)
    groups = booked.optimizer.param_groups
    assert all(g['fused'] and torch.is_tensor(g['lr']) for g in groups)  # fused, reading the lr from a tensor
    assert groups[0]['lr'].item() == pytest.approx(common.learning_rate(booked, booked.step - 1))
    assert booked_losses == pytest.approx(plain_losses, rel=tolerance(script))
    same_weights(weights(plain), weights(booked), tolerance(script))
    if script is ghmc:  # the running bin counts live in a tensor updated in place, as inside a graph
        assert booked.extra['ghm_density'].counts.sum() > 0


def test_at_lr_zero_the_weights_stay_and_then_move(run_args, bookkeeping):
    run = common.prepare(baseline, run_args())
    images, targets = next(common.train_batches(run, 0))
    step = run.graph
    step(images, targets, 0.1)
    before = [p.clone() for p in run.net.parameters()]
    for _ in range(3):
        step(images, targets, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, run.net.parameters()))
    step(images, targets, 0.1)
    assert not all(torch.equal(a, b) for a, b in zip(before, run.net.parameters()))


@pytest.mark.parametrize('script', [baseline, adamw])
@pytest.mark.parametrize('first_booked', [True, False], ids=['booked-then-plain', 'plain-then-booked'])
def test_resume_across_the_bookkeeping_and_the_plain_step(script, first_booked, run_args, tmp_path, monkeypatch):
    flags = ('--epochs', '3')
    straight = common.main(script, run_args(*flags, out='straight'))
    as_graphed = lambda run: (False, 'eager (test)')  # noqa: E731
    with monkeypatch.context() as m:
        if first_booked:
            m.setattr(cuda_graph, 'plan', as_graphed)
        interrupted_in_epoch_2(script, run_args(*flags, out='killed'))
    saved = torch.load(tmp_path / 'killed' / 'last.pt', weights_only=True)['optimizer']['param_groups'][0]
    assert torch.is_tensor(saved['lr']) == first_booked and bool(saved.get('fused')) == first_booked
    with monkeypatch.context() as m:
        if not first_booked:
            m.setattr(cuda_graph, 'plan', as_graphed)
        resumed = common.main(script, run_args(*flags, '--resume', out='killed'))
    assert resumed['epochs'] == straight['epochs'] == 3
    a, b = (torch.load(tmp_path / out / 'model.pt', weights_only=True)['state_dict'] for out in ('straight', 'killed'))
    # one epoch of fused Adam among foreach ones moves the BN biases by 1.5e-3 of their size; a resume that lost
    # Adam's moments, by 0.5
    same_weights(a, b, 1e-2 if script is adamw else 1e-5)


def test_the_opening_line_says_how_the_step_runs(run_args, capsys):
    common.main(baseline, run_args())
    assert 'step eager (cpu: CUDA graphs need an NVIDIA GPU)' in capsys.readouterr().out


def test_compile_and_an_explicit_cuda_graph_are_refused_in_one_line(run_args):
    with pytest.raises(SystemExit, match=r'--cuda-graph and --compile default: .* drop one of them'):
        common.main(baseline, run_args('--compile', '--cuda-graph'))


def test_cuda_graph_is_not_part_of_what_resume_compares(run_args, capsys):
    common.main(baseline, run_args('--no-cuda-graph'))
    result = common.main(baseline, run_args('--resume'))
    assert 'finished already' in capsys.readouterr().out and result['args']['cuda_graph'] is False


class FailingCapture:
    """torch.cuda.graph as it behaves when the captured code fails: leaving the block ends the capture, and
    capture_end raises its own error, which replaces the first one (torch 2.14, torch/cuda/graphs.py)."""

    def __init__(self, graph, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *error):
        raise RuntimeError("CUDA error: operation failed due to a previous error during capture\n"
                           "CUDA kernel errors might be asynchronously reported at some other API call")


def test_a_failed_capture_names_its_first_cause_not_the_invalidated_capture(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'graph', FailingCapture)
    monkeypatch.setattr(torch.cuda, 'CUDAGraph', lambda: None)
    net = torch.nn.Linear(2, 2)
    run = SimpleNamespace(device=torch.device('cpu'), optimizer=torch.optim.SGD(net.parameters(), lr=0.1))

    def syncs_with_the_host(run, images, targets):  # a trick's loss that reads a value: .item() inside the graph
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore lines")
    step = cuda_graph.GraphedStep(run, syncs_with_the_host, capture=False)
    with pytest.raises(SystemExit) as e:
        step.record()
    assert str(e.value) == ("error: the training step could not be captured as a CUDA graph (RuntimeError: CUDA error: "
                            "operation not permitted when stream is capturing): --no-cuda-graph runs it eager")
    # and the module says that such a step stops, unlike one that plan() finds cannot be captured at all
    doc = ' '.join(cuda_graph.__doc__.split())
    assert "A capture that fails when it is made, after the warm-up steps (a trick's loss that reads a tensor's " \
        "value on the host), does not fall back to eager: the run stops" in doc


def test_torch_never_warns_of_a_capturable_adam_run_eager():
    """What set_optimizer's comment says: Optimizer.__init__ marks the warning given (pytorch issue 72948), so the
    eager warm-up steps of a capturable Adam stay silent."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], capturable=False)
    assert optimizer._warned_capturable_if_run_uncaptured is True
