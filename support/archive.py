"""What a run saves and reads back: last.pt (to resume), log.jsonl, result.json and model.pt, and the
checks that a saved run is this command's (its flags, the files they name, its data) before it is
resumed or skipped. Where and how the files are written (the lock, whole writes, --force): runfolder.py.

log.jsonl, last.pt and the interrupt message always agree on how many epochs are done.
"""
import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

import models
from support import cuda_graph, datasets
from support.device import device_name
from support.flags import RUNTIME_ONLY_FLAGS, describe, fail
from support.runfolder import ctrl_c_held, put_back, save_atomic, set_aside, write_text_atomic


def other_command(made_args, made_tricks, args, trick_flags, made_files=None, now_files=None):
    """How a saved run's flags differ from this run's (runtime-only flags aside), in words; '' if they do not.
    A flag naming a file (distill's --teacher) is the same where the file is: by the digest the run recorded
    (made_files; now_files: this run's, default file_digests of its flags), or for a run from before digests
    or a file that is not here, by its path written another way (runs/a//b is runs/a/b)."""
    made_files = made_files or {}
    now_args = describe(vars(args))
    now_files = file_digests(now_args) if now_files is None else now_files
    same = same_files(made_args, now_args, made_files, now_files)
    made = {**made_args, **same, 'tricks': {t: {**f, **{k: v for k, v in same.items() if k in f}}
                                            for t, f in made_tricks.items()}}
    now = {**now_args, 'tricks': describe(trick_flags)}
    differ = {k for k in now if k not in RUNTIME_ONLY_FLAGS and k in made and made[k] != now[k]}
    differ = sorted(differ | {k for k in made_files if k in now_files and now_files[k] != made_files[k]})
    differ = [k for k in differ if k != 'tricks'] or differ  # a trick's flags say it already
    return ', '.join(f"{k}: {now[k]} is not the file the run was made with (sha256 {made_files[k][:8]} there, "
                     f"{now_files.get(k, 'no such file')[:12]} here)" if k in made_files else
                     f"{k}: {made[k]} there, {now[k]} here" for k in differ[:3])


def file_digests(values):
    """sha256 (16 hex digits) of each file that a flag other than a runtime-only one names: a run is made by
    the file (distill's teacher, --weights PATH), not by the path it had there. Recorded in last.pt and
    result.json; read once per file and version."""
    return {k: sha256_of(v, *stat_key(v)) for k, v in sorted(values.items())
            if k not in RUNTIME_ONLY_FLAGS | {'script'} and isinstance(v, str) and os.path.isfile(v)}


def stat_key(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=16)
def sha256_of(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()[:16]


def same_files(made_args, now_args, made_files, now_files):
    """{flag: its value here} for each flag that names the file the saved run was made with."""
    same = {k: now_args[k] for k, digest in made_files.items() if now_files.get(k) == digest}
    for k, value in made_args.items():  # a run from before digests, or a file not here: its path, written another way
        if k not in now_files and isinstance(value, str) and isinstance(now_args.get(k), str) and \
                '/' in value and os.path.normpath(value) == os.path.normpath(now_args[k]):
            same[k] = now_args[k]
    return same


def data_words(fingerprint, keys):
    """The parts `keys` of a data fingerprint in words: '10 classes, 400 train images'."""
    words = {'dataset': f"{fingerprint['dataset']} data", 'classes': f"{fingerprint['classes']} classes",
             'train': f"{fingerprint['train']} train images", 'val': f"{fingerprint['val']} val images",
             'test': f"{fingerprint['test']} test images", 'val_split': f"--val-split {fingerprint['val_split']}",
             'image_size': f"{fingerprint['image_size']} px"}
    return ', '.join(words[k] for k in keys)


def other_data(made, now):
    """The parts of the data fingerprint `now` that the saved `made` differs in, 'digest' always among them and
    last where any is (other counts mean other files); [] for the same data."""
    differ = [k for k in now if k != 'digest' and made.get(k) != now[k]]
    return differ + ['digest'] if differ or made.get('digest') != now['digest'] else []


def check_data(out, made, now, log):
    """Stop where the run in `out`, saved with the data fingerprint `made`, was trained on other data than `now`."""
    if made is None:  # saved before runs recorded their data
        log(f"note: {out} was saved before runs recorded their data: its data is not checked")
        return
    differ = other_data(made, now)
    if differ and differ != ['digest']:
        fail(f"{out} was trained on {data_words(made, differ[:-1])}; this command gives "
             f"{data_words(now, differ[:-1])}: use another --out, or --force")
    if differ:
        fail(f"{out} was trained on other files ({data_words(now, ['classes', 'train'])} here too, but their names, "
             "labels or sizes differ): use another --out, or --force")


def forget_old_run(progress):
    """--force's old run goes once the new run has saved an epoch (main calls this after each save)."""
    if progress.old_run is not None and progress.saved:
        shutil.rmtree(progress.old_run, ignore_errors=True)
        progress.old_run = None


def check_run_dir(out, args, trick_flags, rank, fingerprint, log):
    """'done', 'resume' or 'fresh'; refuses to overwrite a run without --resume or --force, or to take a
    finished run made on other data for this one. It reads and removes nothing: --force sets the old run
    aside (set_aside) only once the new command has passed every check before training."""
    finished, unfinished = (out / 'result.json').exists(), (out / 'last.pt').exists()
    if args.force and args.resume:
        fail("--force starts the run over and --resume carries it on: drop one of them")
    if args.force:
        return 'fresh'
    if finished:  # what the run was made from first: --resume is the way only where it is this command's run
        made = read_result(out)
        check_data(out, made.get('data'), fingerprint, log)
        what = other_command(made['args'], made['tricks'], args, trick_flags, made.get('files'))
        if what:
            fail(f"{out} holds a finished run of another command ({what}): --force redoes it, or another --out")
        if not args.resume:
            fail(f"{out} already holds this command's run, finished: --resume skips it, --force overwrites it, or "
                 "pick another --out")
        return 'done'
    if unfinished and not args.resume:
        fail(f"{out} holds an unfinished run (last.pt): --resume continues it where it is this command's, --force "
             "starts over, or pick another --out")
    return 'resume' if unfinished else 'fresh'


def read_result(out):
    """result.json, or one line naming it where it is not one this project wrote (damaged, or edited by hand)."""
    path = out / 'result.json'
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"cannot read {path} ({e}): --force starts the run over, or pick another --out")
    if not (isinstance(result, dict) and isinstance(result.get('args'), dict) and 'tricks' in result
            and 'final_test_acc' in result):
        fail(f"{path} is not a result.json of this project (no args, tricks or final_test_acc): --force starts the "
             "run over, or pick another --out")
    return result


def rng_state(run):
    state = {'cpu': torch.get_rng_state(), 'data': run.gen.get_state()}
    if run.device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(run.device)
    if run.world > 1:  # each process augments with its own generator: keep them all
        states = [None] * run.world
        dist.all_gather_object(states, state['data'])
        state['data'] = states
    return state


def set_rng_state(run, state):  # generator states are CPU byte tensors, whatever map_location did
    torch.set_rng_state(state['cpu'].cpu())
    run.gen.set_state((state['data'][run.rank] if isinstance(state['data'], list) else state['data']).cpu())
    if 'cuda' in state and run.device.type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'].cpu(), run.device)


def ran_on(run):
    """How many processes trained and with how many CPU threads each: runtime flags, yet other numbers (DDP
    splits each batch and its statistics; CPU sums in another order), so last.pt and result.json record them."""
    return {'world_size': run.world, 'threads': torch.get_num_threads()}


def checkpoint(run, epoch, best_val, wall_seconds):
    """Everything an exact resume needs, the command that made it, and what model.pt says of the net
    (so that distill.py can learn from a run still training)."""
    return {'epoch': epoch, 'wall_seconds': wall_seconds, 'model': run.net.state_dict(),
            'extra': run.extra.state_dict(), 'optimizer': run.optimizer.state_dict(), 'scheduler': {'step': run.step},
            'scaler': run.scaler.state_dict(), 'rng': rng_state(run), 'best_val_acc': best_val,
            'args': describe(vars(run.args)), 'tricks': describe(run.trick_flags),
            'files': file_digests(vars(run.args)), **model_description(run), **ran_on(run)}


def resume(run, path):
    """Restore a run from last.pt; returns (epochs done, best val acc, wall seconds so far)."""
    try:
        state = torch.load(path, map_location=run.device, weights_only=True)
    except Exception as e:  # a file cut short, or no checkpoint at all: torch's own words say little ('105')
        fail(f"cannot read {path} (not a file torch.save wrote, or one cut short: {type(e).__name__}): --force "
             "starts the run over")
    if not (isinstance(state, dict) and isinstance(state.get('args'), dict) and isinstance(state.get('tricks'), dict)
            and {'model', 'optimizer', 'epoch', 'rng'} <= state.keys()):
        fail(f"{path} is not a checkpoint of this project: --force starts the run over, or pick another --out")
    what = other_command(state['args'], state['tricks'], run.args, run.trick_flags, state.get('files'))
    if what:
        fail(f"{path} was made by another command ({what}): --force starts over, or pick another --out")
    check_data(run.out, state.get('data'), run.fingerprint, run.log)
    made, now = state.get('world_size'), run.world  # None: saved before last.pt recorded it, nothing to compare
    if made not in (None, now):
        processes = f"{made} process{'' if made == 1 else 'es'}"
        run.log(f"note: {path} was saved by a run of {processes}, this one has {now}: it carries on, but not to the "
                f"unbroken run's numbers (each process draws its own augmentation and batch statistics): resume it "
                f"with {processes} to keep them")
    made, now = state.get('threads'), torch.get_num_threads()
    if made not in (None, now) and run.device.type == 'cpu':  # a GPU computes alike at any thread count
        run.log(f"note: {path} was saved by a run of {made} CPU threads, this one has {now}: it carries on, but the "
                "last digits of its numbers will differ from the unbroken run's (a run is reproducible at one thread "
                f"count): --threads {made} keeps them")
    options = [{k: v for k, v in group.items() if k != 'params'} for group in run.optimizer.param_groups]
    try:
        run.net.load_state_dict(state['model'])
        run.extra.load_state_dict(state['extra'])
        run.optimizer.load_state_dict(state['optimizer'])
        run.scaler.load_state_dict(state['scaler'])
    except (RuntimeError, ValueError, KeyError) as e:
        fail(f"{path} does not fit this run ({str(e).splitlines()[0]}): --force starts over")
    for group, own in zip(run.optimizer.param_groups, options):  # the state of the checkpoint, the options of
        group.update(own)  # this run (a graphed run's tensor lr and fused form are not the eager one's)
    cuda_graph.place_step_counts(run.optimizer)
    run.step = state['scheduler']['step']
    set_rng_state(run, state['rng'])
    return state['epoch'], state['best_val_acc'], state['wall_seconds']


def read_log(path, upto):
    """The log lines of epochs already checkpointed (a killed run may have logged one more)."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors='replace').splitlines(), 1):
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            row = 'bad'
        if row is not None and not (isinstance(row, dict) and isinstance(row.get('epoch'), int)):
            fail(f"{path}, line {number}, is not an epoch's line of this project: mend or delete that line, or "
                 "--force starts the run over")
        rows += [row] if row else []
    return [r for r in rows if r['epoch'] <= upto]


@dataclass
class Progress:
    """How far a run is: the epochs that last.pt holds, the best val accuracy so far, the wall time of
    the sessions before this one, and log.jsonl's rows."""
    out: Path
    epochs: int  # planned
    saved: int = 0
    best_val: float = None
    wall_before: float = 0.0
    rows: list = field(default_factory=list)
    begun: bool = False  # the data loaded and the net built
    old_run: Path = None  # the run --force replaces, set aside until this one has saved an epoch (rank 0)

    @contextlib.contextmanager
    def said_when_interrupted(self):
        """Ctrl-C, SIGTERM (run_all.sh's time budget) or an unreadable image met while streaming end the run
        in one line; an interrupt's line says what last.pt holds and how to carry on. Whatever ends a --force
        run before it saved an epoch (these, a divergence, a full disk) puts the old run back, and its line
        says so."""
        try:
            yield
        except BaseException as e:
            back = ''
            if self.old_run is not None and not self.saved:
                put_back(self.old_run, self.out)
                self.old_run, back = None, f"; --force replaced nothing: {self.out} holds the old run again"
            if isinstance(e, datasets.DataError):
                fail(str(e) + back)
            if isinstance(e, KeyboardInterrupt):
                if not self.begun:
                    fail("interrupted before the first epoch (while loading the data or building the net): nothing "
                         "saved" + back)
                if not self.saved:
                    fail(f"interrupted in epoch 1: nothing saved yet; the same command starts {self.out} again" + back)
                fail(f"interrupted: {self.out}/last.pt holds {self.saved} of {self.epochs} epochs; the same command "
                     "with --resume carries on from there")
            if back and isinstance(e, SystemExit) and isinstance(e.code, str):  # fail()'s line, e.g. a divergence
                raise SystemExit(e.code + back) from None
            if back:
                e.add_note(back[2:])
            raise

    def wall_seconds(self, started):
        return self.wall_before + time.time() - started


def finished_already(out, log):
    """--resume on a finished run of the same command: its result."""
    result = read_result(out)
    log(f"{out} is finished already (--resume)")
    log(f"final test accuracy: {result['final_test_acc']:.2f}%")
    return result


def begin(run, state, progress):
    """The run folder made ready for the first epoch: --force's old run set aside (only now that every check
    has passed; it goes once the new run has saved an epoch, and comes back if it ends before), or last.pt
    loaded to --resume, and the log rows of the epochs it holds."""
    if run.args.force and run.rank == 0:
        progress.old_run = set_aside(run.out)
    if run.world > 1:
        dist.barrier()
    if state == 'resume':
        progress.saved, progress.best_val, progress.wall_before = resume(run, run.out / 'last.pt')
        run.log(f"resumed {run.out} after epoch {progress.saved}")
    progress.rows = read_log(run.out / 'log.jsonl', progress.saved)
    if len(progress.rows) < progress.saved:  # log.jsonl is written before last.pt: it was cut or deleted
        fail(f"{run.out}/log.jsonl holds {len(progress.rows)} of the {progress.saved} epochs that last.pt holds: "
             "--force starts the run over")
    progress.begun = True


def save_epoch(run, progress, row, started):
    """The epoch's row into log.jsonl and the run into last.pt, held so that a Ctrl-C leaves both, and the
    message it ends with, at the same epoch."""
    if 'val_acc' in row:
        progress.best_val = max(progress.best_val or 0.0, row['val_acc'])
    progress.rows.append(row)
    ckpt = checkpoint(run, row['epoch'], progress.best_val, progress.wall_seconds(started))
    with ctrl_c_held():
        if run.rank == 0:
            write_text_atomic(run.out / 'log.jsonl', ''.join(json.dumps(r) + '\n' for r in progress.rows))
            save_atomic(ckpt, run.out / 'last.pt')
        progress.saved = row['epoch']


def save_result(run, progress, started):
    """model.pt and result.json, both or neither; returns the result."""
    args, rows = run.args, progress.rows
    result = {'script': args.script, 'tricks': describe(run.trick_flags), 'args': describe(vars(args)),
              'final_test_acc': rows[-1]['test_acc'], 'final_test_top5': rows[-1].get('test_top5'),
              'best_val_acc': progress.best_val, 'epochs': args.epochs, 'num_classes': len(run.data.classes),
              'wall_seconds': progress.wall_seconds(started), 'device': device_name(run.device, run.world),
              'precision': str(run.amp_dtype or torch.float32).split('.')[-1], 'torch': torch.__version__,
              'data': run.fingerprint, 'files': file_digests(vars(args)),
              'finished': time.strftime('%Y-%m-%d %H:%M:%S'), **ran_on(run)}
    with ctrl_c_held():
        if run.rank == 0:
            save_atomic(model_file(run), run.out / 'model.pt')
            write_text_atomic(run.out / 'result.json', json.dumps(result, indent=2) + '\n')
    return result


def model_description(run):
    """What evaluate.py and distill.py need beside the weights: arch, constructor switches, classes,
    sizes, normalisation, and the fingerprint of the data it was trained on."""
    data = run.data
    return {'arch': run.args.arch, 'options': run.net.options, 'classes': list(data.classes),
            'image_size': data.image_size, 'test_image_size': data.test_image_size, 'load_size': data.load_size,
            'test_load_size': data.test_load_size, 'mean': data.mean.flatten().tolist(),
            'std': data.std.flatten().tolist(), 'dataset': data.dataset, 'data': run.fingerprint}


def model_file(run):
    """model.pt: the net's weights and its description; the tricks' state beside the net (EMA's
    average) goes under 'extra'."""
    return {**model_description(run), 'state_dict': {k: v.cpu() for k, v in run.net.state_dict().items()},
            'extra': {k: v.cpu() for k, v in run.extra.state_dict().items()}}


def load_model_file(path):
    """A run's model.pt (or its last.pt, which holds the same and more) as a model.pt's dict, or one clear
    line saying what the file is instead."""
    if not Path(path).exists():
        fail(f"{path} does not exist")
    try:
        saved = models.read_file(path)  # the reason in words, not torch's advice to load the file unsafely
    except ValueError as e:
        fail(f"cannot read {path}: {e}: pass a run's model.pt (or last.pt)")
    if isinstance(saved, dict) and 'optimizer' in saved and 'arch' in saved:  # a last.pt
        saved = {**saved, 'state_dict': saved['model']}
    if not (isinstance(saved, dict) and 'state_dict' in saved and 'arch' in saved):
        what = "a last.pt saved before last.pt described its net" if isinstance(saved, dict) and 'optimizer' in saved \
            else "no arch in it"
        fail(f"{path} is not a model.pt of this repo ({what}): pass a run's model.pt")
    return saved


def build_from_file(saved):
    """The net a model.pt describes, with its weights."""
    options = dict(saved['options'])
    net = models.build(saved['arch'], options.pop('num_classes'), **options)
    net.load_state_dict(saved['state_dict'])
    return net
