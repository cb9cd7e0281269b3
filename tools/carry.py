"""run_all.sh's check of the finished runs a table builds on, in one process: each run of the plan that
OUT already holds, and each one it would carry from PUBLISHED (the preset's published raw results),
passes the checks that the script's own --resume makes (the same flags, the recipe's included; the same
data) and its result.json agrees with the last epoch of its own log.jsonl.

    python tools/carry.py OUT PUBLISHED DATA PRESET [--check] < PLAN

PLAN: one run a line, its words separated by tabs: the run's name, its folder, then the script and its
flags as the run gets them (--data, --out and --resume included). PUBLISHED may be '' (none).

- A finished run in OUT that fails a check stops the table before anything trains or is written: each
  one is named in one line (exit 1). Delete it to train it again.
- A published run that passes is copied whole into OUT (its folder and its .command), where the table
  then skips it; one that fails is named, not carried, and trains. A run already begun in OUT is kept.
- --check: say what each run of the plan would do (done, carried, resumed, trained, refused), write
  nothing.
"""
import functools
import importlib
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402
import summarize  # noqa: E402  (beside this file)
from support import archive, flags, runfolder, sources, tricks  # noqa: E402


@functools.cache
def source_of(data, dataset, image_size):
    """sources.find_source, once per data set for every run of the table (it lists every file)."""
    return find_source(data, dataset, image_size)


find_source = sources.find_source
sources.find_source = source_of  # fill_in_defaults asks it for each run: one listing of DATA for all of them


FINGERPRINTS = {}  # (the data set, --val-split, --subset, --test-subset) -> its fingerprint, made once


def fingerprint(source, *split):
    key = (source.path, source.dataset, source.image_size, *split)
    if key not in FINGERPRINTS:
        FINGERPRINTS[key] = sources.fingerprint(source, *split)
    return FINGERPRINTS[key]


def command_of(argv):
    """(args, trick_flags, fingerprint) of a run's command line, as the script itself reads it."""
    script = importlib.import_module(Path(argv[0]).stem)  # the script's module, as `python SCRIPT` runs it
    args, _, trick_flags, changed = tricks.parse(script, argv[1:], common.RECIPE)
    source = flags.fill_in_defaults(args, changed)
    return args, trick_flags, fingerprint(source, args.val_split, args.subset, args.test_subset)


def relocated(made_args, made_out, out):
    """A run names its table's files (distill's teacher) by path, under the table's folder then: read such a
    path under the table's folder now (runs/cpu/teacher/..., made in runs/cpu, is OUT/teacher/... here). Where
    the run recorded the file's digest and the file is here, the digest decides (archive.other_command); the
    path does for a run made before digests, or a file that is not here (a teacher published without it)."""
    made_root, root = (os.path.normpath(Path(p).parent.parent) for p in (made_out, out))

    def moved(value):
        path = os.path.normpath(value) if isinstance(value, str) else ''
        return os.path.join(root, path[len(made_root) + 1:]) if path.startswith(made_root + os.sep) else value
    return {k: moved(v) for k, v in made_args.items()}


def files_now(args, carried):
    """The digests of the files a run's flags name; a file inside a run this check is about to carry into OUT
    (distill's teacher) is read where it is published."""
    paths = {}
    for key, value in vars(args).items():
        paths[key] = value
        for source, run_dir in carried if isinstance(value, str) and not os.path.exists(value) else ():
            inside = os.path.relpath(os.path.normpath(value), os.path.normpath(run_dir))
            if not inside.startswith('..'):
                paths[key] = str(source / inside)
    return archive.file_digests(paths)


def why_not(run_dir, argv, carried=()):
    """Why the finished run in run_dir is not the run of argv, in words; None where it is. carried: the
    (published folder, folder in OUT) of the runs this check carries before it."""
    try:
        result = archive.read_result(run_dir)
    except SystemExit as e:
        return str(e).removeprefix('error: ').split(': --force')[0]
    args, trick_flags, now = command_of(argv)
    made = result.get('data')
    differ = archive.other_data(made, now) if made is not None else []
    if differ[:-1]:
        return (f"it was trained on {archive.data_words(made, differ[:-1])}, the table gives "
                f"{archive.data_words(now, differ[:-1])}")
    if differ:
        return "it was trained on other files than DATA's (their names, labels or sizes differ)"
    made_out = result['args'].get('out', '')
    what = archive.other_command(relocated(result['args'], made_out, args.out),
                                 {t: relocated(f, made_out, args.out) for t, f in result['tricks'].items()},
                                 args, trick_flags, result.get('files'), files_now(args, carried))
    if what:
        return f"it is a finished run of another command ({what})"
    try:  # the result and its log.jsonl tell one run, as summarize, which tables it, reads them
        summarize.read_run(run_dir / 'result.json')
    except ValueError as e:
        return str(e)
    return None


def begun(run_dir):
    """What of a run OUT already holds, other than a finished run: '' (nothing), or in words."""
    files = sorted(p.name for p in run_dir.iterdir() if p.name != runfolder.LOCK) if run_dir.is_dir() else []
    if not files:
        return ''
    return 'an unfinished run (last.pt), which resumes' if 'last.pt' in files else f"other files ({files[0]})"


def carry(source, run_dir):
    """Copy a published run (its folder and its .command) into OUT: whole, or not at all."""
    partial = run_dir.with_name(f".{run_dir.name}.carrying")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    if run_dir.is_dir():  # empty, or a lock only (begun() said so)
        shutil.rmtree(run_dir)
    os.replace(partial, run_dir)
    command = source.with_name(f"{source.name}.command")
    if command.exists():
        shutil.copy2(command, run_dir.with_name(f"{run_dir.name}.command"))


def main(argv):
    out, published, data, preset = Path(argv[0]), argv[1], argv[2], argv[3]
    check_only = '--check' in argv[4:]
    plan = [line.rstrip('\n').split('\t') for line in sys.stdin if line.strip()]
    said, carried, refused, other_data = [], [], [], []  # every check first: a refusal leaves OUT as it was
    counts = dict.fromkeys(['done', 'carried', 'resumed', 'trained'], 0)
    for name, run_dir, *command in plan:
        run_dir = Path(run_dir)
        if (run_dir / 'result.json').exists():
            why = why_not(run_dir, command, carried)
            if why:
                refused.append(f"run_all.sh {preset}: {name}: {run_dir} cannot be part of this table: {why}: "
                               f"delete {run_dir} to train it again, or give another OUT")
            else:
                said.append(f"== {name}: done ({run_dir})")
                counts['done'] += 1
            continue
        source = Path(published) / os.path.relpath(run_dir, out) if published else None
        why = why_not(source, command, carried) if source and (source / 'result.json').exists() else 'none'
        if why is None and begun(run_dir):
            said.append(f"== {name}: not carried from {source}: {run_dir} holds {begun(run_dir)}")
            counts['resumed' if (run_dir / 'last.pt').exists() else 'trained'] += 1
            continue
        if why is None:
            carried.append((source, run_dir))
            said.append(f"== {name}: carried from {published}")
            counts['carried'] += 1
            continue
        if 'other files than' in why:
            other_data.append(name)
        elif why != 'none':
            said.append(f"== {name}: not carried from {source}: {why}; it trains")
        fate = 'resumed' if (run_dir / 'last.pt').exists() else 'trained'
        counts[fate] += 1
        said.append(f"== {name}: {fate} ({run_dir})")
    if other_data:
        said.append(f"== {published}: not carried, made on other files than DATA's: {', '.join(other_data)}")
    if refused:
        print('\n'.join(refused), file=sys.stderr)
        return 1
    for source, run_dir in [] if check_only else carried:
        carry(source, run_dir)
    if check_only:
        said.append(f"check: {len(plan)} runs: " + ', '.join(f"{n} {what}" for what, n in counts.items()) +
                    "; nothing written")
    # the table says what it carried; the rest (done, resumed, trained) it says as each run starts
    print('\n'.join(line for line in said if check_only or ': not carried' in line or ': carried' in line))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
