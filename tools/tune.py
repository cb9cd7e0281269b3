"""Hyper-parameter search over any script's flags, with Optuna (optional: pip install optuna).

    python tools/tune.py SCRIPT --search FLAG=SPACE ... [--trials N] -- FLAGS FOR EVERY TRIAL

Each trial is a normal run, `python SCRIPT FLAGS <sampled flags> --out DIR/trial-N`, in a process
of its own with its own run dir (log.jsonl, result.json, model.pt), its output beside it in
DIR/trial-N.stdout.txt and DIR/trial-N.stderr.txt.
Everything after `--` goes to the script unchanged; `--val-split 0.1` is added when it is missing.

A search space is FLAG=KIND:LOW:HIGH with KIND uniform, loguniform or int, or FLAG=choice:A,B,C:

    lr=loguniform:0.01:0.4   smoothing=uniform:0:0.2   epochs=int:10:30   arch=choice:resnet20,resnet32

Sampler: TPE, seeded by --seed plus the number of trials the study holds already (so a continued
study draws new values, not its first trials' again). Objective: the val_acc of the run's last
epoch, on the --val-split images; the last epoch, not the best one, because the last is the model
the run keeps (model.pt). Trials are selected on val_acc only: the test accuracy is recorded beside
it, for information. Pruning: tune.py reads the trial's log.jsonl as the run goes, reports each
epoch's val_acc, and kills the run when its best val_acc so far is below the median of the earlier
trials at the same epoch (MedianPruner, as NNI's Medianstop; not before 5 trials are done nor
before epoch --prune-warmup). A run that exits non-zero fails its trial, with the last line of its
stderr recorded; a run that fails before any trial has completed stops the search.

The study lives in --storage, by default the SQLite file DIR/study.db. Running the same command
again continues the study: --trials N means "until the study holds N complete or pruned trials".
With a database URL (postgresql://..., its driver installed) several machines can run the command and
work on one study; each keeps its trial dirs in its own DIR. At the end tune.py writes DIR/best.txt,
the best trial's command line ready to paste, and DIR/trials.md, a table of every trial.

The example: the NNI experiment of the Awesome-work repository (SmallHedgehog/Awesome-work,
experiments/cifar10-bl_ca_mu_lb_nni, BL_CA_MU_LB_NNI.py): ResNet-32 on CIFAR-10 with cosine decay,
mixup and label smoothing, weight decay 1e-4, TPE over the lr, the mixup alpha and the smoothing,
NNI's Medianstop assessor, 80 trials. `--example awesome-work` runs that search here:

    python tools/tune.py --example awesome-work --trials 80 -- --epochs 30

which is

    python tools/tune.py mixup.py --search lr=loguniform:0.001:1 smoothing=uniform:0:0.2 alpha=uniform:0.05:1 \\
        -- --with cosine labelsmooth --arch resnet32 --weight-decay 1e-4 --epochs 30

Two changes from the NNI search space: lr is searched on a log scale over the same range (uniform
over [0.001, 1] draws 90% of its trials above 0.1), and alpha starts at 0.05, not 0, because
Beta(0, 0) is no distribution (--alpha must be positive). NNI selected on the test set; here it is
the val split. Awesome-work trained 400 epochs a trial; --epochs is yours to choose.
"""
import argparse
import json
import math
import shlex
import subprocess
import sys
import time
import urllib.parse
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # where the scripts are
KINDS = ('uniform', 'loguniform', 'int', 'choice')
POLL_SECONDS = 0.5  # how often a running trial's log.jsonl is read
EXAMPLES = {
    'awesome-work': {'script': 'mixup.py',
                     'search': ['lr=loguniform:0.001:1', 'smoothing=uniform:0:0.2', 'alpha=uniform:0.05:1'],
                     'flags': ['--with', 'cosine', 'labelsmooth', '--arch', 'resnet32', '--weight-decay', '1e-4']},
}


class RunFailed(Exception):
    """A trial's run exited non-zero (or could not start): its trial fails, the study goes on."""


# ---------------------------------------------------------------- the command line

def parse_space(entry):
    """'lr=loguniform:0.01:0.4' -> ('lr', 'loguniform', [0.01, 0.4]); 'f=choice:a,b' -> ('f', 'choice', ['a', 'b'])"""
    name, eq, spec = entry.partition('=')
    kind, _, rest = spec.partition(':')
    name = name.lstrip('-')
    if not eq or not name or kind not in KINDS:
        raise ValueError(f"--search {entry}: expected FLAG=KIND:LOW:HIGH with KIND one of "
                         f"{', '.join(KINDS[:3])}, or FLAG=choice:A,B,C")
    if kind == 'choice':
        values = [v for v in rest.split(',') if v]
        if not values:
            raise ValueError(f"--search {entry}: choice needs at least one value")
        return name, kind, values
    try:
        low, high = [(int if kind == 'int' else float)(v) for v in rest.split(':')]
    except ValueError:
        raise ValueError(f"--search {entry}: expected two {'integers' if kind == 'int' else 'numbers'}, LOW:HIGH")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"--search {entry}: needs finite LOW and HIGH")
    if not low < high or (kind == 'loguniform' and low <= 0):
        raise ValueError(f"--search {entry}: needs LOW < HIGH{' and LOW > 0' if kind == 'loguniform' else ''}")
    return name, kind, [low, high]


def flag_value(flags, name):
    """The value given to --name in flags (None when absent); the last one where it is given twice, as argparse does."""
    for i in reversed(range(len(flags))):
        if flags[i] == f'--{name}':
            return flags[i + 1] if i + 1 < len(flags) else ''
        if flags[i].startswith(f'--{name}='):
            return flags[i].split('=', 1)[1]
    return None


def at_least_one(text):
    """--trials: a count of trials; 0 or -3 would run none and then say that none has completed."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


at_least_one.__name__ = 'int'  # argparse names it in "invalid int value: 'x'"


def int_in(low, high=None):
    """An int flag of at least low, and below high where given: --prune-warmup, the sampler's seed."""
    def parse(text):
        value = int(text)
        if value < low or high is not None and value >= high:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}" if high is None else
                                             f"must be in {low} .. {high - 1}, got {text}")
        return value
    parse.__name__ = 'int'  # argparse names it in "invalid int value: 'x'"
    return parse


SEEDS = 2 ** 32  # numpy's RandomState, under Optuna's samplers, takes seeds below this


def sqlite_url(path):
    """sqlite:///PATH, the absolute path quoted so that no character of it reads as URL syntax (SQLAlchemy's URL:
    'tq?a' would be the file tq with a query, 'a#b' a fragment, 'a%20b' the folder 'a b'; Optuna's str.format
    would take '{' for its own); SQLAlchemy unquotes it back to the path itself."""
    return 'sqlite:///' + urllib.parse.quote(str(Path(path).resolve()), safe='/')


def parse_args(argv):
    """(tune.py's flags, the script's fixed flags): argv is split at the first `--`."""
    cut = argv.index('--') if '--' in argv else len(argv)
    ours, flags = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog='tune.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.error = lambda message: parser.exit(2, f"tune.py: error: {message} (see --help)\n")  # one line
    a = parser.add_argument
    a('script', nargs='?', help='the training script, e.g. mixup.py')
    a('--search', nargs='+', metavar='FLAG=SPACE', help='the flags to search: lr=loguniform:0.01:0.4 ...')
    a('--example', choices=sorted(EXAMPLES), help="fill in the script, search and flags of a documented search")
    a('--trials', type=at_least_one, default=20, help='run until the study holds this many complete or pruned '
      'trials (default: %(default)s)')
    a('--study', metavar='NAME', help='study name (default: <script>-<searched flags>)')
    a('--dir', metavar='DIR',
      help='where the trial runs, study.db, best.txt and trials.md go (default: runs/tune-<study>)')
    a('--storage', metavar='URL', help='Optuna storage (default: sqlite:///DIR/study.db); a database URL '
      'lets several machines work on one study')
    a('--seed', type=int_in(0, SEEDS), default=0,
      help="the sampler's seed (default: %(default)s); the runs' own --seed goes after --")
    a('--prune-warmup', type=int_in(0), default=10, metavar='EPOCHS',
      help='prune no trial before this epoch (default: %(default)s; --epochs or more switches pruning off)')
    args = parser.parse_args(ours)
    if args.example:
        if args.script:
            parser.error(f"--example {args.example} runs {EXAMPLES[args.example]['script']}: drop {args.script}")
        example = EXAMPLES[args.example]
        args.script, args.search = example['script'], args.search or example['search']
        flags = example['flags'] + flags
    if not args.script or not args.search:
        parser.error('name a script and its --search space, or an --example')
    try:
        args.space = [parse_space(entry) for entry in args.search]
    except ValueError as e:
        parser.error(str(e))
    path = Path(args.script)
    args.script_path = path if path.exists() else ROOT / path
    if not args.script_path.is_file():
        parser.error(f"{args.script}: no such script")
    for name, _, _ in args.space:
        if flag_value(flags, name) is not None:
            parser.error(f"--{name} is both searched and given after --: keep one")
    if flag_value(flags, 'out') is not None:
        parser.error('tune.py gives each trial its own --out (DIR/trial-N): drop --out')
    split = flag_value(flags, 'val-split')
    if split is None:
        flags = flags + ['--val-split', '0.1']
    elif is_zero(split):  # 0, -0, 0e0: the script itself checks the other values
        parser.error(f"--val-split {split}: trials are selected on val_acc, which needs a val split above 0")
    args.study = args.study or '-'.join([path.stem] + [name for name, _, _ in args.space])
    args.dir = Path(args.dir or f'runs/tune-{args.study}')
    args.storage = args.storage or sqlite_url(args.dir / 'study.db')
    return args, flags


def is_zero(text):
    try:
        return float(text) == 0
    except ValueError:  # the script names what it cannot read
        return False


def check_optuna():
    """Optuna is optional: the other scripts run without it. Functions below import it where they use it."""
    try:
        import optuna
    except ImportError:
        print('tune.py needs optuna: pip install optuna', file=sys.stderr)
        raise SystemExit(2)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # tune.py prints its own line per trial


# ---------------------------------------------------------------- one trial

def fmt(value):
    """A sampled value as it goes on the command line (and in best.txt and trials.md)."""
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def suggest(trial, name, kind, bounds):
    if kind == 'choice':
        return trial.suggest_categorical(name, bounds)
    if kind == 'int':
        return trial.suggest_int(name, *bounds)
    return trial.suggest_float(name, *bounds, log=kind == 'loguniform')


def read_log(path):
    # common.py replaces log.jsonl whole after each epoch: a read never sees half a line
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def watch(proc, trial, log_path):
    """Report each new epoch's val_acc while the run goes; kill the run when the pruner says so.

    Returns the run's log rows once it has ended."""
    import optuna
    reported = 0
    while True:
        ended = proc.poll() is not None  # then the log is read one last time, and nothing is pruned
        rows = read_log(log_path)
        for row in rows[reported:]:
            if 'val_acc' not in row:  # a trick's own evaluate, say; objective() then ends the run
                trial.set_user_attr('error', f"epoch {row.get('epoch')} of the run logged no val_acc")
                raise RunFailed(trial.user_attrs['error'])
            trial.report(row['val_acc'], row['epoch'])
            print(f"  trial {trial.number} epoch {row['epoch']}: val_acc {row['val_acc']:.2f}%", flush=True)
            if not ended and trial.should_prune():
                proc.terminate()
                proc.wait()
                raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")
        reported = len(rows)
        if ended:
            return rows
        time.sleep(POLL_SECONDS)


def last_line(path):
    lines = [line for line in path.read_text(errors='replace').splitlines() if line.strip()]
    return lines[-1].strip() if lines else ''


def objective(args, flags, trial):
    """One run with this trial's flags; its last val_acc."""
    params = {name: suggest(trial, name, kind, bounds) for name, kind, bounds in args.space}
    run_flags = flags + [a for name, value in params.items() for a in (f'--{name}', fmt(value))]
    trial.set_user_attr('flags', run_flags)
    out = args.dir / f'trial-{trial.number}'
    streams = [out.with_name(f'{out.name}.{name}.txt') for name in ('stdout', 'stderr')]  # beside the run's folder,
    taken = [p for p in (out, *streams) if p.exists()]  # which holds only the run's files
    if taken:  # trial numbers are the study's: these belong to another study
        trial.set_user_attr('error', f'{taken[0]} exists already: give this study its own --dir')
        raise RunFailed(trial.user_attrs['error'])
    print(f"trial {trial.number}: {shlex.join(['python', args.script, *run_flags])}", flush=True)
    with open(streams[0], 'x') as stdout, open(streams[1], 'x') as stderr:
        proc = subprocess.Popen([sys.executable, str(args.script_path), *run_flags, '--out', str(out)],
                                stdout=stdout, stderr=stderr)
        try:
            rows = watch(proc, trial, out / 'log.jsonl')
        finally:  # pruned, interrupted or broken: the run does not outlive its trial
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        trial.set_user_attr('error', last_line(streams[1]) or f'exit status {proc.returncode}')
        raise RunFailed(trial.user_attrs['error'])
    trial.set_user_attr('test_acc', json.loads((out / 'result.json').read_text())['final_test_acc'])
    return rows[-1]['val_acc']


# ---------------------------------------------------------------- the study

def finished_states():
    import optuna
    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def open_study(args, flags):
    import optuna
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        # heartbeats: a trial whose tune.py died is marked failed after 3 minutes, not left running forever
        storage = optuna.storages.RDBStorage(args.storage, heartbeat_interval=60, grace_period=180)
    study = optuna.create_study(study_name=args.study, storage=storage, direction='maximize', load_if_exists=True)
    started = study.user_attrs.get('flags')
    if started is None:
        study.set_user_attr('flags', flags)
    elif started != flags:  # its trials would be compared with trials of another setting
        raise SystemExit(f"error: study {args.study} in {args.storage} was started with the flags "
                         f"{shlex.join(started)}, not these: give this search its own --study (or --dir)")
    # a continued study gets its own seed: the same one would draw the first trials' values again
    sampler = optuna.samplers.TPESampler(seed=(args.seed + len(study.trials)) % SEEDS)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=args.prune_warmup)
    return optuna.load_study(study_name=args.study, storage=storage, sampler=sampler, pruner=pruner)


def say(study, trial):
    """One line per ended trial; stops a study whose runs cannot even start."""
    import optuna
    params = '  '.join(f'{k} {fmt(v)}' for k, v in trial.params.items())
    if trial.state == optuna.trial.TrialState.COMPLETE:
        outcome = f"val_acc {trial.value:.2f}% (test {trial.user_attrs['test_acc']:.2f}%)"
    else:
        outcome = trial.user_attrs.get('error', f'at epoch {max(trial.intermediate_values, default=0)}')
    print(f"trial {trial.number} {trial.state.name.lower()}: {params}  {outcome}", flush=True)
    if trial.state == optuna.trial.TrialState.FAIL and not study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        print('stopping: a run failed before any trial of this study completed; '
              'the command itself is probably wrong', flush=True)
        study.stop()


def table(study, names):
    """trials.md: one row per trial."""
    lines = ['| trial | state | ' + ' | '.join(names) + ' | val_acc | test_acc | seconds | note |',
             '|' + '---|' * (len(names) + 6)]
    for t in study.trials:
        last = max(t.intermediate_values, default=None)
        val = t.value if t.value is not None else t.intermediate_values.get(last)
        note = t.user_attrs.get('error', f'pruned at epoch {last}' if t.state.name == 'PRUNED' else '')
        test = t.user_attrs.get('test_acc')
        cells = [str(t.number), t.state.name, *(fmt(t.params[n]) if n in t.params else '' for n in names),
                 '' if val is None else f'{val:.2f}', '' if test is None else f'{test:.2f}',
                 f'{t.duration.total_seconds():.0f}' if t.duration else '', note.replace('|', '/')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def best_command(study, args):
    """best.txt: the best trial's command line, ready to paste."""
    best = study.best_trial
    return (f"# study {study.study_name}: trial {best.number} of {len(study.trials)}, val_acc {best.value:.2f}% "
            f"(test {best.user_attrs['test_acc']:.2f}%, for information: trials are selected on val_acc)\n"
            f"{shlex.join(['python', args.script, *best.user_attrs['flags']])}\n")


def main(argv=None):
    """Run the study to --trials finished trials; write best.txt and trials.md; returns the study."""
    args, flags = parse_args(sys.argv[1:] if argv is None else list(argv))
    check_optuna()
    import optuna
    args.dir.mkdir(parents=True, exist_ok=True)
    study = open_study(args, flags)
    remaining = args.trials - len(study.get_trials(deepcopy=False, states=finished_states()))
    print(f"study {args.study} in {args.storage}: {len(study.trials)} trials so far, "
          f"{max(remaining, 0)} more to run", flush=True)
    if remaining > 0:
        try:  # n_trials bounds this invocation (failed trials count); the callback stops all workers at --trials
            study.optimize(lambda trial: objective(args, flags, trial), n_trials=remaining, catch=(RunFailed,),
                           callbacks=[optuna.study.MaxTrialsCallback(args.trials, states=finished_states()), say])
        except KeyboardInterrupt:
            print('interrupted: run the same command again to continue the study', flush=True)

    trials = table(study, [name for name, _, _ in args.space])
    (args.dir / 'trials.md').write_text(trials)
    print(f"\n{args.dir / 'trials.md'}:\n{trials}")
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise SystemExit(f"error: no trial of study {args.study} has completed: see {args.dir / 'trials.md'}")
    best = best_command(study, args)
    (args.dir / 'best.txt').write_text(best)
    print(f"{args.dir / 'best.txt'}:\n{best}", end='')
    return study


if __name__ == '__main__':
    main()
