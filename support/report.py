"""What a run prints: the opening line, one line per epoch, TensorBoard, and --summary's layer table."""
import torch

import augment
from support.device import device_name
from support.flags import describe, plural


def printer(rank):
    return (lambda msg: print(msg, flush=True)) if rank == 0 else (lambda msg: None)


def fmt_time(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def opening_line(run):
    args = run.args
    tricks = ', '.join(f"{n} {describe(s)}" for n, s in run.trick_flags.items()) or 'none (baseline)'
    amp = f", amp {str(run.amp_dtype).split('.')[-1]}" if run.amp_dtype else ''
    return (f"{args.script}: {args.arch} on {args.dataset}, {plural(args.epochs, 'epoch')} of "
            f"{plural(run.steps_per_epoch, 'step')}, batch {args.batch_size}, tricks: {tricks}, "
            f"device {device_name(run.device, run.world)}{amp}, step {run.step_kind}, out {run.out}")


def opening(run):
    """What a run prints before its first epoch (--summary's table, the opening line); its TensorBoard writer."""
    board = TensorBoard(run)
    if run.args.summary and run.rank == 0:
        print_summary(run)
    run.log(opening_line(run))
    return board


def note_left_out(run):
    """Say so when the last, incomplete batch of each epoch leaves out many of the training images."""
    n, b = len(run.data.train_index), run.args.batch_size
    if n >= b and n % b > 0.1 * n:  # (fewer images than a batch make one smaller batch: none left out)
        run.log(f"note: {n} training images in batches of {b} leave {n % b} out of every epoch; --batch-size "
                f"{n // max(1, round(n / b))} uses nearly all of them")


def diverged(run, epoch, what):
    """The one line for a run whose loss stopped being a number in `epoch` (0-based)."""
    saved = f"{run.out}/last.pt holds epoch {epoch}" if epoch else "nothing is saved yet"
    return (f"{what} (epoch {epoch + 1}): training diverged; {saved}: lower --lr (or drop --amp) and start over "
            "with --force")


def epoch_line(run, row, rows):
    """The epoch in one line; its lr is the last step's (a schedule that decays per step ends below --lr)."""
    left = run.args.epochs - row['epoch']
    eta = left * sum(r['epoch_seconds'] for r in rows[-3:]) / len(rows[-3:])
    accs = '  '.join(f"{k} {v:.2f}%" for k, v in row.items() if k.endswith('_acc'))
    # a trick's loss (distillation's at T = 20) is no cross-entropy: train_ce beside it compares across rows
    ce = f"train_ce {row['train_ce']:.4f}  " if run.hooks('loss') else ''
    return (f"epoch {row['epoch']}/{run.args.epochs}  last lr {row['lr']:.4g}  train_loss {row['train_loss']:.4f}  {ce}"
            f"test_loss {row['test_loss']:.4f}  {accs}  {row['images_per_sec']:.0f} img/s  "
            f"{row['epoch_seconds']:.1f}s  ETA {fmt_time(eta)}")


class TensorBoard:
    """The per-epoch figures in out/tensorboard with --tensorboard; nothing without it (or without tensorboard)."""

    def __init__(self, run):
        self.writer = None
        if not run.args.tensorboard or run.rank != 0:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            run.log("--tensorboard: tensorboard is not installed (pip install tensorboard); going on without it")
            return
        self.writer = SummaryWriter(run.out / 'tensorboard')

    def add(self, row):
        if self.writer:
            for key, value in row.items():
                if key != 'epoch':
                    self.writer.add_scalar(key, value, row['epoch'])
            self.writer.flush()

    def close(self):
        if self.writer:
            self.writer.close()


@torch.no_grad()
def print_summary(run):
    """Each leaf layer's output shape and parameter count, for one batch of two test images."""
    net, rows = run.net, []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: rows.append(
        (name, type(m).__name__, tuple(o.shape), sum(p.numel() for p in m.parameters(recurse=False)))))
        for name, m in net.named_modules() if name and not any(m.children())]
    images, _ = next(run.data.test.batches([run.data.test_index[:2]]))
    net.eval()
    try:
        data = run.data
        images = augment.test_view(images, data.test_image_size, data.test_load_size)
        net(augment.normalize(images, data.mean, data.std))
    finally:
        for h in hooks:
            h.remove()
    width = max(len(r[0]) for r in rows)
    run.log(f"{'layer':<{width}}  {'type':<18} {'output':<22} {'params':>10}")
    for name, kind, shape, params in rows:
        run.log(f"{name:<{width}}  {kind:<18} {str(shape):<22} {params:>10,}")
    run.log(f"{'total':<{width}}  {'':<18} {'':<22} {sum(p.numel() for p in net.parameters()):>10,}")
