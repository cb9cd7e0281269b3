"""The training step as one CUDA graph, replayed for every step.

Why: on a GPU a small net's step is paced by launching its kernels from Python, not by the
GPU's work (docs/speed.md: an eager ResNet-20 step leaves an H200 mostly idle). A CUDA graph
records the step's kernels once and replays them all in one launch (PyTorch's CUDA notes,
"CUDA Graphs": whole-network capture).

The graph holds forward, loss (the tricks' loss hooks too), backward and the optimizer step.
The batch (augmentation, the tricks' batch hooks, normalisation) and the after_step hooks (EMA)
stay eager. A replay reads and writes the same memory every time, so this unit keeps:
- static inputs: each batch is copied into the same image and target tensors;
- the lr in a tensor on the device that every parameter group reads, filled before each step:
  SGD and Adam(W) run fused, which read it there (a Python float would be frozen at capture);
- the step's [loss, train_ce] (common.update) in a static tensor, copied for the epoch's list after
  each step;
- a few eager steps before capture, on a side stream, so that cuDNN has chosen its kernels
  and the optimizer's state exists;
- the optimizer's options set at its first step, so after any --resume (load_state_dict puts
  back the saved float lrs and options).

Where the step cannot be captured (CPU, MPS, DDP, fp16's grad scaler, --compile, another
optimizer) it runs eager (common.train_step) and the opening line says why: plan() decides
that before training, from the run's set-up. A capture that fails when it is made, after the
warm-up steps (a trick's loss that reads a tensor's value on the host), does not fall back to
eager: the run stops, naming the first cause, and says that --no-cuda-graph runs it eager.

With capture=False the same bookkeeping runs without the capture: the eager step of
--no-cuda-graph on a GPU (the same fused optimizer, so that the graph changes no result), and
how the tests check it on a CPU.
"""
import torch

from support.flags import fail

WARMUP_STEPS = 3  # eager steps before capture (PyTorch's example takes 3)


def plan(run):
    """(capture, words for the opening line): capture is None where the step runs as the CPU's."""
    args, optimizer = run.args, run.optimizer
    if run.device.type != 'cuda':
        return None, f"eager ({run.device.type}: CUDA graphs need an NVIDIA GPU)"
    if run.world > 1:
        return None, "eager (DDP: each process launches its own step)"
    if args.compile:
        return None, "eager (--compile: its CUDA graphs are --compile reduce-overhead)"
    if run.scaler.is_enabled():
        return None, "eager (fp16: its grad scaler reads the step's inf check on the host; --amp bf16 is graphed)"
    if type(optimizer) not in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        return None, f"eager ({type(optimizer).__name__} has no fused form taking a tensor lr)"
    if tuple(int(v) for v in torch.__version__.split('.')[:2]) < (2, 5):
        return None, f"eager (torch {torch.__version__}: a tensor lr in every fused optimizer needs torch 2.5)"
    if args.cuda_graph is False:
        return False, "eager (--no-cuda-graph)"
    return True, "one CUDA graph"


class GraphedStep:
    """update(run, images, targets) -> [loss, train_ce], captured once and replayed; see the module's docstring."""

    def __init__(self, run, update, capture):
        self.run, self.update, self.capture = run, update, capture
        self.lr = torch.zeros((), device=run.device)  # every group's: the loop gives them all one lr
        self.images = self.targets = self.loss = self.graph = None
        self.steps = 0
        self.stream = torch.cuda.Stream(run.device) if capture else None

    def __call__(self, images, targets, lr):
        """One optimizer step at this lr on this batch; [loss, train_ce] as a new tensor on the device."""
        if self.images is None:  # the first step of this process, after any --resume
            self.set_optimizer()
            self.images, self.targets = images.clone(), targets.clone()
        elif (images.shape, targets.shape, targets.dtype) != (self.images.shape, self.targets.shape, self.targets.dtype):
            raise ValueError(f"a batch of {tuple(images.shape)} images and {tuple(targets.shape)} {targets.dtype} targets "
                             f"after {tuple(self.images.shape)} and {tuple(self.targets.shape)}: every step of a graph "
                             "takes the same shapes (targets: class probabilities)")
        else:
            self.images.copy_(images)
            self.targets.copy_(targets)
        self.lr.fill_(lr)
        if self.graph is None and self.capture and self.steps >= WARMUP_STEPS:
            self.record()
        if self.graph is not None:
            self.graph.replay()
        else:
            self.eager()
        self.steps += 1
        return self.loss.clone()  # the next step overwrites self.loss ([loss, train_ce])

    def set_optimizer(self):
        """Fused, with the lr in a tensor; Adam's step counts on the device, as fused Adam keeps them; the
        state in its param's memory format (a resume may change --channels-last: fused kernels need both alike)."""
        optimizer = self.run.optimizer
        for group in optimizer.param_groups:
            group.update(lr=self.lr, fused=True, foreach=None)
            if 'capturable' in group:
                # record() sets it (Adam(W) refuses a capture without it); fused ignores it, and torch never warns
                # of it in an eager step (Optimizer.__init__ marks that warning as given, pytorch issue 72948)
                group['capturable'] = False
        place_step_counts(optimizer)
        for param, state in optimizer.state.items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param).copy_(value)

    def eager(self):
        self.run.optimizer.zero_grad(set_to_none=True)
        if self.stream is None:
            self.loss = self.update(self.run, self.images, self.targets)
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.run.device))  # warm-up as capture runs: on a side stream
        with torch.cuda.stream(self.stream):
            self.loss = self.update(self.run, self.images, self.targets)
        torch.cuda.current_stream(self.run.device).wait_stream(self.stream)

    def record(self):
        """Capture one step; nothing runs until replay."""
        optimizer = self.run.optimizer
        for group in optimizer.param_groups:
            if 'capturable' in group:
                group['capturable'] = True  # Adam(W) refuses to be captured without it
        optimizer.zero_grad(set_to_none=True)  # backward in the capture allocates the grads from the graph's pool
        self.graph = torch.cuda.CUDAGraph()
        try:  # thread_local: a DataLoader's thread (--stream) pinning memory meanwhile must not end the capture
            with torch.cuda.graph(self.graph, capture_error_mode='thread_local'):
                self.loss = self.update(self.run, self.images, self.targets)
        except Exception as e:  # e.g. a trick's loss that syncs with the host (see the contract in common.py)
            fail(f"the training step could not be captured as a CUDA graph ({first_cause(e)}): "
                 "--no-cuda-graph runs it eager")


def first_cause(error):
    """What failed first, in one line. An error inside `with torch.cuda.graph(...)` makes the block's exit call
    capture_end, which raises its own error (the capture was invalidated) in place of it: the first is that
    one's __context__."""
    first = error.__context__ if error.__context__ is not None else error
    lines = str(first).strip().splitlines()
    return f"{type(first).__name__}: {lines[0]}" if lines else type(first).__name__


def place_step_counts(optimizer):
    """Adam's step counts where its options keep them: on the device when fused or capturable, else on
    the host (load_state_dict places them by the options saved with them, which may be the others')."""
    for group in optimizer.param_groups:
        on_device = group.get('fused') or group.get('capturable')
        for param in group['params']:
            state = optimizer.state.get(param, {})
            if 'step' in state:
                state['step'] = state['step'].to(param.device if on_device else 'cpu', torch.float32)
