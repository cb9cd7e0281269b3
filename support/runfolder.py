"""The run folder: one run in it at a time (the lock), nothing in it but a run's own files, nothing written
through a symbolic link or outside it, every file written whole (a temporary file, then a rename),
--force's old run set aside until the new run has saved its first epoch, and Ctrl-C and SIGTERM held
while a file is written. What the files hold: archive.py.
"""
import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import threading

import torch

from support.flags import fail

LOCK = '.lock'  # in the run folder; never renamed or deleted while held (last.pt and result.json are replaced)
SAVED = ('last.pt', 'result.json', 'log.jsonl', 'model.pt')  # written whole (written()), each under its own name
RUN_FILES = {LOCK, *SAVED, 'tensorboard'}  # what a run writes in its folder, besides these three of its own:
OLD_RUN = '.before-force'  # --force's old run, set aside until the new run has saved its first epoch
OLD_RUN_PARTIAL = '.before-force.partial'  # the same while it is filled: a kill then leaves it to put back whole
TEMPORARY = re.compile(r'\.(?:' + '|'.join(map(re.escape, SAVED)) + r')\.partial-\d+')  # temporary()'s names only
OS_LITTER = {'.DS_Store', 'Thumbs.db', 'desktop.ini'}  # what file browsers leave in every folder they show


@contextlib.contextmanager
def claimed(out, rank, log):
    """This process's hold on the run folder `out` while the block runs: an exclusive flock on out/.lock,
    which names the holder's pid. flock, not fcntl's locks: a flock belongs to its open file, so two runs in
    one process exclude each other too, and closing another descriptor on the file keeps it; the kernel drops
    it when the process dies, so no lock is ever stale. A second run on the folder stops here, before it writes
    anything, as does a folder that is not a run's (check_holds_only_a_run). The holder then deletes a killed
    run's temporary files and settles a --force that was killed before it saved (put_back_or_drop_old_run).
    The folders this hold made go again if the run saves nothing in them. Under torchrun only rank 0 writes,
    so only rank 0 holds it."""
    if rank != 0:
        yield
        return
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file: give a folder for the run")
    check_holds_only_a_run(out)  # before the lock: nothing is written into a folder that is not a run's
    made = [p for p in [out, *out.parents] if not p.exists()]  # the folders this hold makes, deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open_lock(out / LOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            fail(f"{out / LOCK} is a symbolic link: a run writes nothing through one (it would write outside its "
                 "folder); delete the link, or give another --out")
        fail(f"cannot write the run folder {out} ({e.strerror}): give another --out")
    held = False
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or 'unknown'
            fail(f"{out} is in use by another run (pid {holder}): wait for it to end, or give another --out")
        except OSError as e:  # a file system without flock (some network mounts)
            log(f"note: {out} cannot be locked ({e.strerror}): nothing stops a second run from writing into it")
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        remove_temporaries(out)
        put_back_or_drop_old_run(out, log)
        yield
    finally:
        if made and held and all(p.name == LOCK for p in out.iterdir()):
            with contextlib.suppress(OSError):
                (out / LOCK).unlink()
                for folder in made:
                    folder.rmdir()
        lock.close()  # the flock goes with it


def open_lock(path):
    """The lock file, opened for reading and writing, never through a symbolic link planted at its name."""
    return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666), 'r+')


def remove_temporaries(out):
    """A killed run's half-written files: temporary()'s names, and no other file (a user's results.tmp.txt stays)."""
    for path in out.iterdir():
        if TEMPORARY.fullmatch(path.name) and (path.is_symlink() or not path.is_dir()):
            path.unlink(missing_ok=True)


def is_folder(path):
    return path.is_dir() and not path.is_symlink()


def put_back_or_drop_old_run(out, log):
    """Settle a --force run killed (kill -9, a power cut) before it could: the old run it set aside is put back
    where the new run saved no epoch, and goes where it did; a killed set_aside() is undone."""
    partial, old = out / OLD_RUN_PARTIAL, out / OLD_RUN
    if is_folder(partial):  # the new run had not begun: what was moved goes back beside what was not
        move_all(partial, out)
        log(f"note: a --force run in {out} was stopped while it set the old run aside: the old run is back")
    if is_folder(old):
        if os.path.lexists(out / 'last.pt') or os.path.lexists(out / 'result.json'):  # the new run saved
            shutil.rmtree(old)
        else:
            put_back(old, out)
            log(f"note: a --force run in {out} was stopped before it saved an epoch: the old run it replaced is back")


def move_all(folder, out):
    """Every entry of `folder` into `out` under its name, then `folder` goes."""
    for path in folder.iterdir():
        os.replace(path, out / path.name)
    folder.rmdir()


def set_aside(out):
    """--force: the old run's files into out/.before-force, whole or not at all (a Ctrl-C waits), where they stay
    until the new run has saved its first epoch; returns that folder, or None where there was no old run."""
    names = [n for n in (*SAVED, 'tensorboard') if os.path.lexists(out / n)]
    if not names:
        return None
    partial = out / OLD_RUN_PARTIAL
    try:
        with ctrl_c_held():
            partial.mkdir()
            for name in names:
                os.replace(out / name, partial / name)
            os.replace(partial, out / OLD_RUN)
    except OSError as e:
        fail(f"cannot set the old run in {out} aside for --force ({e.strerror}): its files are as they were; fix that "
             "and try again")
    return out / OLD_RUN


def put_back(old, out):
    """The old run that --force set aside, back in `out` in place of what the new run wrote."""
    with ctrl_c_held():
        clear_run(out)
        move_all(old, out)


def check_holds_only_a_run(out):
    """Stop where `out` holds what no run writes (a user's files: --out at the wrong folder), a model.pt
    that no run made, or a symbolic link where a run writes into a folder."""
    if not out.is_dir():
        return
    names = {p.name for p in out.iterdir()}
    foreign = sorted((n for n in names - RUN_FILES - OS_LITTER - {OLD_RUN, OLD_RUN_PARTIAL}
                      if not TEMPORARY.fullmatch(n)), key=lambda n: (n.startswith('.'), n))
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ''
        fail(f"{out} holds {foreign[0]}{more}, which no run writes: a run's folder holds only its own files; "
             "give another --out")
    if 'model.pt' in names and not names & {'last.pt', 'result.json'}:  # a run's model.pt comes after its last.pt
        fail(f"{out} holds a model.pt but no run (no last.pt, no result.json): the run would overwrite it; give "
             "another --out")
    for name in ('tensorboard', OLD_RUN, OLD_RUN_PARTIAL):
        if (out / name).is_symlink():
            fail(f"{out / name} is a symbolic link: a run writes nothing through one (it would write outside its "
                 "folder); delete the link, or give another --out")


def clear_run(out):
    """The run's files in `out` go (a link among them: the link itself)."""
    for f in SAVED:
        (out / f).unlink(missing_ok=True)
    board = out / 'tensorboard'
    if board.is_symlink():
        board.unlink()
    shutil.rmtree(board, ignore_errors=True)  # else TensorBoard shows both runs as one


def temporary(path):
    """A temporary name beside `path`, this process's own (two writers never share one), hidden, and of a form
    no user's file has: at start the lock holder deletes a killed run's (TEMPORARY), and no other file."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def save_atomic(obj, path):
    with written(path) as tmp:
        torch.save(obj, tmp)


def write_text_atomic(path, text):
    with written(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def written(path):
    """A temporary file that becomes `path` when the block ends: a kill mid-write leaves the previous file
    whole. A write that fails (a full disk) leaves no temporary behind and stops in one line. The temporary
    is made here, a new file: a symbolic link planted at its name goes, and nothing is written through it (a
    link at `path` is replaced, itself)."""
    tmp = temporary(path)
    try:
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        cause = 'no space left on its disk' if getattr(e, 'errno', None) == errno.ENOSPC or \
            'file write failed' in str(e) else getattr(e, 'strerror', None) or str(e).splitlines()[0]
        fail(f"cannot write {path} ({cause}): free space or fix that, then the same command with --resume carries "
             "on from the last epoch saved")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and kill's default (a scheduler's stop)


def interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals():
    """Ctrl-C and SIGTERM stop the run as KeyboardInterrupt, which saves what can be saved and says how to
    --resume, also where a launcher started it with Ctrl-C ignored (bash's `&`); the handlers before are back
    when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, interrupt) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def ctrl_c_held():
    """Hold a Ctrl-C or SIGTERM that arrives inside the block and raise it when the block ends; inside
    another hold, hand it on to that one, which raises it when the outer block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            handler = previous[caught[0]]
            if not callable(handler):  # the default action (SIGTERM's would end the process unsaved)
                raise KeyboardInterrupt
            handler(caught[0], None)  # interrupt() raises KeyboardInterrupt; an outer hold records it
