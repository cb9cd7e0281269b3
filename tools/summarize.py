"""Summarize an ablation run by run_all.sh into a markdown table and a plot.

    python tools/summarize.py runs/cpu [--out docs]

reads the raw results in a preset's folder, as run_all.sh writes it or as a copy beside a
published table keeps it (docs/cpu): rows.txt and <row>/s<seed>/result.json and log.jsonl.
It writes ablation-<preset>.md: the machines and hours, then per row the tricks, the final test
accuracy as mean +- std over seeds, its difference to the baseline with that difference's standard
error and 95% interval (paired by seed), the seeds (and any run that diverged, from its DIR.log),
epochs, wall time per run, and the paper's reported change beside it; and ablation-<preset>.png
(test accuracy per epoch of each row, and the differences with their 95% intervals) when
matplotlib is installed. A difference inside its 95% interval (Student's t) is marked as noise.
The accuracy is the final epoch's, never the best epoch's: no model is selected on the test set.
With --data-name it also prints what README's Results table and the scripts' "Measured here" lines
must say (tests/test_published.py holds them to it).
"""
import argparse
import json
import math
import statistics
import sys
from pathlib import Path

# What the papers report for each row: the change in top-1 (ResNet-50 on ImageNet unless said), at the regime
# nearest the row's (batch 256 for rows trained at batch 128), other regimes beside it, labelled
PAPER = {
    'warmup': '+0.16 (75.87 -> 76.03 at batch 256; +0.76 at batch 1024; He et al. Table 4)',
    'largebatch': '-0.70 (75.87 -> 75.17, batch 256 -> 1024, linear lr scaling alone; Table 4)',
    'largebatch+warmup': '+0.06 (75.87 -> 75.93, batch 256 -> 1024, with warmup; Table 4)',
    'zerogamma': '+0.16 (76.03 -> 76.19 at batch 256, on warmup; +0.44 at batch 1024; Table 4)',
    'nobiasdecay': '-0.03 (76.19 -> 76.16 at batch 256, on zero gamma; -0.34 at batch 1024; Table 4)',
    'resnet_d': '+0.29 (76.87 -> 77.16, D alone, on B+C; +0.95 for B+C+D; Table 5)',
    'cosine': '+0.75 (77.16 -> 77.91, ResNet-50-D; Table 6)',
    'labelsmooth': '+0.40 (77.91 -> 78.31, on cosine; Table 6)',
    'mixup': '+0.84 (78.31 -> 79.15, on cosine + LS, 200 epochs; Table 6)',
    'distill': '+0.36 (78.31 -> 78.67, on cosine + LS; Table 6)',
    'cosine+ls': '+1.15 (77.16 -> 78.31; Table 6)',
    'cosine+mixup+ls': '+1.99 (77.16 -> 79.15; Table 6)',
    'all': '+3.28 (75.87 -> 79.15, all but distillation; Tables 4-6)',
    'cutmix': '+2.28 (76.32 -> 78.60; Yun et al. Table 3)',
    'randaugment': '+1.3 (76.3 -> 77.6; Cubuk et al.)',
    # CIFAR-10, ResNet-18, 90 epochs, siahuat0727/bag-of-tricks (one run each, the best epoch's accuracy)
    'warmup5': '+0.08 (93.10 -> 93.18; siahuat0727)', 'mixup0.3': '+0.67 (93.10 -> 93.77; siahuat0727)',
    'all4': '+1.53 (93.10 -> 94.63; siahuat0727)',
    # Kaggle Intel, ImageNet-pretrained ResNet-50, hoya012's table (test accuracy, one run each)
    'scratch': '86.47', 'pretrained': '89.07', '+adam': '94.13', '+warmup': '94.57', '+cosine': '94.20',
    '+ls': '93.67', '+mixup': '94.03', 'fixres': '-',
}
REFERENCE_ROWS = ('baseline', 'scratch')


RESULT_KEYS = ('final_test_acc', 'tricks', 'args', 'epochs', 'wall_seconds', 'device', 'torch')  # what table() reads


def read_run(result_file):
    """(result, log rows) of one run; ValueError, naming the file and why, where one is damaged."""
    try:
        result = json.loads(result_file.read_text())
    except ValueError as e:
        raise ValueError(f"{result_file} is not JSON ({e})") from None
    if not isinstance(result, dict):
        raise ValueError(f"{result_file} is not a run's result.json (it holds a JSON {type(result).__name__})")
    lacking = [k for k in RESULT_KEYS if k not in result]
    lacking = lacking or ([] if isinstance(result['args'], dict) and 'seed' in result['args'] else ['args.seed'])
    if lacking:
        raise ValueError(f"{result_file} is not a run's result.json (it has no {lacking[0]})")
    log_file = result_file.parent / 'log.jsonl'
    try:
        log = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()] \
            if log_file.exists() else []
    except ValueError as e:
        raise ValueError(f"{log_file} has a line that is not JSON ({e})") from None
    acc = result['final_test_acc']
    if not isinstance(acc, (int, float)) or isinstance(acc, bool):
        raise ValueError(f"{result_file} gives final_test_acc {json.dumps(acc)}, not a number")
    epochs = [row.get('epoch') if isinstance(row, dict) else None for row in log]
    if not isinstance(result['epochs'], int) or epochs != list(range(1, result['epochs'] + 1)):
        raise ValueError(f"{result_file} says {result['epochs']} epochs, but its log.jsonl holds "
                         f"{len(log)} epoch lines")
    if log[-1].get('test_acc') != acc:  # a result edited by hand, or another run's
        raise ValueError(f"{result_file} says {acc}%, but the last epoch of its log.jsonl says "
                         f"{log[-1].get('test_acc')}%")
    return result, log


SETTING = ('epochs', 'arch', 'precision', 'data')  # what a row is measured on, beside its tricks


def setting(result):
    """What a run was measured on: {epochs, arch, precision, data}, each as recorded (None: not recorded)."""
    data = result.get('data') if isinstance(result.get('data'), dict) else {}
    return {'epochs': result['epochs'], 'arch': result['args'].get('arch'), 'precision': result.get('precision'),
            'data': {k: v for k, v in data.items() if k != 'dataset'} or None}


def other_setting(a, b):
    """The parts of setting a that differ from setting b (a part not recorded in either differs from none)."""
    return [k for k in SETTING if a[k] is not None and b[k] is not None and a[k] != b[k]]


def read_runs(root):
    """{row: [(result, log rows) per seed]} in the order of rows.txt, its header lines, the rows with no
    finished run, and {row: [why, per damaged run]}: a damaged run is named and left out, not fatal."""
    header = {}
    rows_file = root / 'rows.txt'
    if rows_file.exists():
        for line in rows_file.read_text().splitlines():
            key, _, value = line.partition(' ')
            header.setdefault(key, []).append(value)
    order = planned_rows(header)
    found = sorted(p.parent.parent.name for p in root.glob('*/s*/result.json') if p.parent.parent.name != 'teacher')
    runs, damaged = {}, {}
    for row in order + [r for r in dict.fromkeys(found) if r not in order]:
        folders = {}
        for result_file in sorted((root / row).glob('s*/result.json')):
            try:
                run = read_run(result_file)
            except ValueError as e:
                damaged.setdefault(row, []).append(str(e))
                continue
            seed = run[0]['args']['seed']
            if seed in folders:  # a copied folder: two results of one run
                raise SystemExit(f"error: {folders[seed]} and {result_file.parent} both hold {row}'s seed {seed}: "
                                 "delete the one that is a copy")
            folders[seed] = result_file.parent
            first = runs.get(row, [run])[0][0]
            differ = other_setting(setting(run[0]), setting(first))
            if differ:
                raise SystemExit(f"error: {row}'s runs differ in {', '.join(differ)} ({result_file.parent}: "
                                 f"{setting(run[0])[differ[0]]}, another: {setting(first)[differ[0]]}): a row pools "
                                 "runs of one setting; move one of them to another folder")
            runs.setdefault(row, []).append(run)
    return runs, header, [r for r in order if r not in runs and r not in damaged], damaged


def planned_rows(header):
    """The rows rows.txt plans, in its order (its `row NAME SCRIPT FLAGS` lines)."""
    return [value.split()[0] for value in header.get('row', [])]


def accuracies_by_seed(runs):
    """{row: {seed: final test accuracy}}"""
    return {row: {r['args']['seed']: r['final_test_acc'] for r, _ in seeds} for row, seeds in runs.items()}


def finished_rows(runs, header):
    """The rows of `runs` whose seeds are all in (rows.txt's `seeds`; every row where it says none)."""
    planned = int(header.get('seeds', ['0'])[0])
    return {row: seeds for row, seeds in runs.items() if len({r['args']['seed'] for r, _ in seeds}) >= planned}


def stats(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else float('nan')
    return mean, std


# Student's t, two-sided 95%, by degrees of freedom; between the keys the smaller key's (wider)
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 15: 2.13,
       20: 2.09, 30: 2.04}


def difference(row, reference):
    """(row - reference, its standard error, the half-width of its 95% interval, paired?) from
    {seed: accuracy}. Paired by seed where both rows ran the same seeds (a seed fixes the init, the
    data order and the crops, so these match within a pair), else as two independent samples with
    the smaller one's degrees of freedom (a cautious Welch)."""
    paired = row.keys() == reference.keys() and len(row) > 1
    if paired:
        diffs = [row[s] - reference[s] for s in row]
        d, se, dof = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs)), len(diffs) - 1
    else:
        (mean, std), (ref_mean, ref_std) = stats(list(row.values())), stats(list(reference.values()))
        d, se = mean - ref_mean, math.sqrt(std ** 2 / len(row) + ref_std ** 2 / len(reference))
        dof = min(len(row), len(reference)) - 1
    half = se * T95[max(k for k in T95 if k <= dof)] if dof >= 1 else float('nan')
    return d, se, half, paired


def delta_cell(d, half, paired):
    """A delta as the pages give it: +- its 95% half-width, marked where unpaired or inside the interval."""
    return f"{d:+.2f} +- {half:.2f}" + ('' if paired else ' (unpaired)') + (' *noise*' if abs(d) < half else '')


def machines(runs, teacher_seconds=0.0, jobs='1'):
    """The machines the runs trained on, with how many runs each, and the hours all of them took (the
    distillation teacher's included), summed: the wall clock where they ran one at a time (jobs: rows.txt's)."""
    devices, seconds = {}, teacher_seconds
    for seeds in runs.values():
        for result, _ in seeds:
            key = f"{result['device']}, torch {result['torch']}"
            devices[key] = devices.get(key, 0) + 1
            seconds += result['wall_seconds']
    many = len(devices) > 1
    return [f"- device: {d}" + (f" ({n} runs)" if many else '') for d, n in devices.items()] + \
        [f"- time: {hours(seconds)} of training and testing, " +
         ("one run after another" if jobs == '1' else f"the runs' own added up (they ran {jobs} at a time)")]


def hours(seconds):
    return f"{seconds / 3600:.1f} hours" if seconds >= 3600 else f"{seconds / 60:.1f} minutes"


def diverged_runs(root, order):
    """{row: [seed folders]} of the runs that stopped because their loss stopped being a number (their
    DIR.log says so): a row reports them, not only its finished seeds."""
    found = {}
    for row in order:
        for log in sorted((root / row).glob('s*.log')):
            lines = log.read_text(errors='replace').strip().splitlines()
            if lines and 'training diverged' in lines[-1] and not (log.with_suffix('') / 'result.json').exists():
                found.setdefault(row, []).append(log.stem)
    return found


def tricks_cells(runs):
    """Each row's Tricks cell: its tricks, each with those of its flags whose values differ between the rows
    that run it, so that two rows of one trick read apart (largebatch warmup-epochs=0.0 beside largebatch
    warmup-epochs=default, its 10% warmup); a flag left at None shows as `default`."""
    def word(flag, value):
        return f"{flag.replace('_', '-')}={'default' if value is None else json.dumps(value)}"
    values = {}  # (trick, flag) -> the values the rows give it
    for seeds in runs.values():
        for trick, flags in seeds[0][0]['tricks'].items():
            for flag, value in flags.items():
                values.setdefault((trick, flag), set()).add(json.dumps(value))
    return {row: ', '.join(' '.join([trick] + [word(f, v) for f, v in flags.items() if len(values[trick, f]) > 1])
                           for trick, flags in seeds[0][0]['tricks'].items()) or '-'
            for row, seeds in runs.items()}


def table(runs, header, missing, preset, damaged=None, diverged=None, teacher_seconds=0.0):
    """The page's text, and each row's (delta, half-width of its 95% interval). diverged: {row: [seed folders]}
    of runs whose loss stopped being a number; teacher_seconds: the teacher's wall time, counted in the hours."""
    diverged = diverged or {}
    by_seed = accuracies_by_seed(runs)
    accs = {row: list(seeds.values()) for row, seeds in by_seed.items()}
    reference = next((r for r in REFERENCE_ROWS if r in accs), None)
    lines = [f"# Ablation: {preset}", ""]
    for key in ('data', 'flags', 'seeds'):
        if key in header:
            lines.append(f"- {key}: `{header[key][0].strip()}`")
    lines.append(f"- command: `{header.get('command', [f'bash run_all.sh {preset}'])[0]}`, then "
                 f"`python tools/summarize.py {header.get('out', [f'runs/{preset}'])[0]}`")
    lines += machines(runs, teacher_seconds, header.get('jobs', ['1 at a time'])[0].split()[0])
    for note in header.get('note', []):
        lines.append(f"- note: {note}")
    if 'teacher' in header:
        lines.append(f"- distillation teacher: {header['teacher'][0]}")
    lines += ["- accuracy: the final epoch's test accuracy (%), mean +- std over seeds; delta: to "
              f"`{reference}`, the mean of the per-seed differences (a seed fixes the init, the data order "
              "and the crops) +- the half-width of its 95% interval (Student's t with seeds - 1 degrees of "
              "freedom: 3.18 standard errors for 4 seeds, 4.30 for 3, 12.71 for 2); *noise*: inside that interval",
              ""]
    lines.append("| Row | Tricks | Test acc. (%) | Delta | Seeds | Epochs | Wall time / run | Reported |")
    lines.append("|---|---|---|---|---|---|---|---|")
    deltas, cells = {}, tricks_cells(runs)
    planned = int(header.get('seeds', ['0'])[0])
    for row, values in accs.items():
        mean, std = stats(values)
        acc = f"{mean:.2f} +- {std:.2f}" if len(values) > 1 else f"{mean:.2f}"
        delta = ''
        differ = other_setting(setting(runs[row][0][0]), setting(runs[reference][0][0])) if reference else []
        if differ:  # no difference is measured between runs of other settings
            delta = f"- (other {', '.join(differ)} than {reference})"
        elif reference and row != reference:
            d, _, half, paired = difference(by_seed[row], by_seed[reference])
            deltas[row] = (d, half)
            delta = f"{d:+.2f}" if math.isnan(half) else delta_cell(d, half, paired)
        results = [r for r, _ in runs[row]]
        wall = statistics.fmean(r['wall_seconds'] for r in results)
        wall = f"{wall / 60:.1f} min" if wall >= 60 else f"{wall:.0f} s"
        seeds = f"{len(values)} of {planned}" if len(values) < planned else f"{len(values)}"  # a table still filling
        if (damaged or {}).get(row):  # the row is marked: it holds fewer seeds than were run
            seeds += f" ({len(damaged[row])} damaged, left out)"
        if diverged.get(row):
            seeds += f" (+{len(diverged[row])} diverged)"
        lines.append(f"| {row} | {cells[row]} | {acc} | {delta} | {seeds} | {results[0]['epochs']} | "
                     f"{wall} | {PAPER.get(row, '-')} |")
    for row in [r for r in diverged if r not in runs]:  # every seed diverged: said, not dropped
        lines.append(f"| {row} | - | diverged | - | 0 (+{len(diverged[row])} diverged) | - | - | "
                     f"{PAPER.get(row, '-')} |")
    for row in [r for r in damaged or {} if r not in runs]:  # every seed damaged: the row is there, empty
        lines.append(f"| {row} | - | - | - | 0 ({len(damaged[row])} damaged, left out) | - | - | "
                     f"{PAPER.get(row, '-')} |")
    again = header.get('command', [f'bash run_all.sh {preset}'])[0]  # with DATA, as the page's command line
    if missing:
        lines += ["", f"Not finished yet: {', '.join(missing)} (run `{again}` again)."]
    if damaged:
        lines += ["", f"Damaged, left out of the table (delete them and run `{again}` again to redo those runs):"]
        lines += [f"- {why}" for whys in damaged.values() for why in whys]
    return '\n'.join(lines) + '\n', deltas


def published(runs, header, page, data_name):
    """What the repo quotes from a table, recomputed from its raw results: README's Results table (the rows
    whose seeds are all in, beside the paper's change) and, per script, the "Measured here" lines of its
    docstring. page: where the table is, as README links it."""
    by_seed = accuracies_by_seed(runs)
    done = list(finished_rows(runs, header))
    reference = next((r for r in REFERENCE_ROWS if r in done), None)
    scripts = {words[0]: (words + [f'{words[0]}.py'])[1] for words in map(str.split, header.get('row', [])) if words}
    lines = ["| Row | Test acc. (%) | Delta (95% interval) | Reported |", "|---|---|---|---|"]
    measured = {}
    for row in done:
        mean, std = stats(list(by_seed[row].values()))
        delta = '-'
        if reference and row != reference and not other_setting(setting(runs[row][0][0]),
                                                                  setting(runs[reference][0][0])):
            d, _, half, _ = difference(by_seed[row], by_seed[reference])
            noise = abs(d) < half
            delta = f"{d:+.2f} +- {half:.2f}" + (' (noise)' if noise else '')
            args = runs[row][0][0]['args']
            measured.setdefault(scripts.get(row, f'{row}.py'), []).append(
                f"Measured here ({page}, row {row}: {args.get('arch')}, {data_name}, {runs[row][0][0]['epochs']} "
                f"epochs, batch {args.get('batch_size')}, {len(by_seed[row])} seeds): "
                f"{statistics.fmean(by_seed[reference].values()):.2f} -> {mean:.2f} top-1, {d:+.2f} +- {half:.2f} "
                f"(95% interval{': noise' if noise else ''}).")
        lines.append(f"| {row} | {mean:.2f} +- {std:.2f} | {delta} | {PAPER.get(row, '-').split(' ')[0]} |")
    training = [row for row in scripts if row not in done]
    if training:
        lines += ["", f"Still training: {', '.join(training)} (the seeds done so far are on [the page]({page}))."]
    return '\n'.join(lines) + '\n', measured


def colours(n):
    """n colours, each its own: tab20's, then evenly spaced hues."""
    import matplotlib
    cmap = matplotlib.colormaps['tab20' if n <= 20 else 'hsv']
    return [cmap(i if n <= 20 else i / n) for i in range(n)]


def panels(runs, names):
    """The rows `names` in panels of bars: those at the reference's batch size, then those at another (the
    large-batch pair, tens of points away), so that the first panel's bars stay readable; and the reference."""
    reference = next(r for r in REFERENCE_ROWS if r in runs)
    batch = {row: seeds[0][0]['args'].get('batch_size') for row, seeds in runs.items()}
    apart = [n for n in names if batch[n] != batch[reference]]
    return [group for group in ([n for n in names if n not in apart], apart) if group], apart, reference


def finish(bars, reference, apart):
    """A panel of deltas: the zero line, the rows top down, its axis and title."""
    bars.axvline(0, color='black', linewidth=0.8)
    bars.invert_yaxis()
    bars.set(xlabel=f'difference to {reference} (points, 95% interval)',
             title=f"at another batch size than {reference}" if apart else 'delta per row')


def save(fig, path):
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def plot(runs, deltas, path):
    """Test accuracy per epoch (mean over seeds) for each row, each in its own colour, and the deltas with
    their 95% intervals, in the row's colour; rows at another batch size than the reference (the large-batch
    pair, tens of points away) in a panel of their own, so that the others' bars stay readable."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    colour = dict(zip(runs, colours(len(runs))))
    groups, apart, reference = panels(runs, list(deltas)) if deltas else ([], [], None)
    fig, axes = plt.subplots(1, 1 + len(groups), figsize=(6.5 * (1 + len(groups)), 5), squeeze=False,
                             gridspec_kw={'width_ratios': [1.3] + [1] * len(groups)})
    curves = axes[0][0]
    for row, seeds in runs.items():
        epochs = min(len(log) for _, log in seeds)
        if epochs:
            mean = [statistics.fmean(log[e]['test_acc'] for _, log in seeds) for e in range(epochs)]
            curves.plot(range(1, epochs + 1), mean, label=row, color=colour[row], marker='.' if epochs < 20 else None)
    curves.set(xlabel='epoch', ylabel='test accuracy (%)', title='test accuracy, mean over seeds')
    curves.xaxis.get_major_locator().set_params(integer=True)
    curves.legend(fontsize=7)
    for bars, names in zip(axes[0][1:], groups):
        values = [deltas[n][0] for n in names]
        errors = [0 if math.isnan(deltas[n][1]) else deltas[n][1] for n in names]
        bars.barh(names, values, xerr=errors, color=[colour[n] for n in names])
        finish(bars, reference, names is apart)
    return save(fig, path)


def teacher(root):
    """The distillation teacher's result.json in a table's folder, or None where it has none (or a damaged one)."""
    result_file = root / 'teacher' / 's0' / 'result.json'
    if not result_file.exists():
        return None
    try:
        return read_run(result_file)[0]
    except ValueError as e:
        print(f"warning: {e}: the table names no teacher", file=sys.stderr)
        return None


def describe(teacher):
    epochs = teacher['epochs']
    return f"{teacher['args'].get('arch')}, {epochs} epoch{'s' * (epochs != 1)}, {teacher['final_test_acc']:.2f}%"


def comparison(tables, teachers=(), training=()):
    """Each trick's paired delta to its own table's baseline with its 95% interval, in each of `tables`
    ([(preset, runs)]), for the rows every table holds: the page's text, and {row: [(delta, half-width) per
    table]} for the plot. teachers: each table's distillation teacher (its result, or None); training: the
    rows they share that are left out because a table still trains their seeds."""
    rows = [row for row in tables[0][1] if all(row in runs for _, runs in tables[1:])]
    reference = next((r for r in REFERENCE_ROWS if r in rows), None)
    if reference is None:
        raise SystemExit("error: the tables share no baseline row with all its seeds in: there is nothing to compare a "
                         "trick to yet")
    if rows == [reference]:
        raise SystemExit(f"error: the tables share no row but {reference}: there is no trick to compare yet (train one "
                         "of the other table's rows in this one first)")
    lines = [f"# Ablation: {' against '.join(preset for preset, _ in tables)}", ""]
    for preset, runs in tables:
        base = runs[reference][0][0]
        lines.append(f"- {preset}: {base['args'].get('arch')}, {base['epochs']} epochs, batch "
                     f"{base['args'].get('batch_size')}, {base.get('precision') or 'precision not recorded'}; "
                     f"raw results and notes on [its page](ablation-{preset}.md)")
    precisions = {runs[reference][0][0].get('precision') for _, runs in tables}
    if len(precisions) > 1:
        words = sorted(p or 'not recorded' for p in precisions)
        lines.append(f"- the tables train in other precisions ({', '.join(words)}): "
                     "a change between them is the schedule's and the precision's together")
    known = [(preset, t) for (preset, _), t in zip(tables, teachers) if t]
    if 'distill' in rows and len({(t['args'].get('arch'), t['epochs']) for _, t in known}) > 1:
        lines.append("- distill: the tables' teachers differ (" + '; '.join(f"{preset}: {describe(t)}" for preset, t
                                                                       in known) +
                     "): its change between them is the teacher's as well as the schedule's")
    if training:
        lines.append(f"- still training, left out until their seeds are all in: {', '.join(training)}")
    lines += ["- delta: to the same table's baseline, the mean of the per-seed differences +- the half-width of its "
              "95% interval; *noise*: inside it; the rows both tables hold", "",
              "| Row | " + ' | '.join(f"{preset}: delta" for preset, _ in tables) + " |",
              "|---" * (len(tables) + 1) + "|"]
    deltas = {}
    for row in rows:
        if row == reference:
            continue
        cells = []
        for _, runs in tables:
            by_seed = accuracies_by_seed({r: runs[r] for r in (row, reference)})
            d, _, half, paired = difference(by_seed[row], by_seed[reference])
            deltas.setdefault(row, []).append((d, half))
            cells.append(delta_cell(d, half, paired))
        lines.append(f"| {row} | {' | '.join(cells)} |")
    return '\n'.join(lines) + '\n', deltas


def plot_comparison(tables, deltas, path):
    """Each row's deltas, one bar per table, with their 95% intervals; the rows at another batch size than
    the baseline in a panel of their own."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    groups, apart, reference = panels(tables[0][1], list(deltas))
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 1 + 0.5 * len(deltas)), squeeze=False)
    height = 0.8 / len(tables)
    for bars, names in zip(axes[0], groups):
        for k, ((preset, runs), colour) in enumerate(zip(tables, colours(len(tables)))):
            place = [i + k * height for i in range(len(names))]
            values = [deltas[n][k][0] for n in names]
            errors = [0 if math.isnan(deltas[n][k][1]) else deltas[n][k][1] for n in names]
            bars.barh(place, values, height, xerr=errors, color=colour,
                      label=f"{preset}: {runs[reference][0][0]['epochs']} epochs")
        bars.set_yticks([i + height * (len(tables) - 1) / 2 for i in range(len(names))], names)
        bars.legend(fontsize=8)
        finish(bars, reference, names is apart)
    return save(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', help='the preset folder, e.g. runs/cpu')
    parser.add_argument('--out', help='where to write the table and plot (default: the preset folder)')
    parser.add_argument('--note', action='append', default=[], help='a line to add to the notes (repeatable)')
    parser.add_argument('--data-name', metavar='TEXT',
                        help="also print what README's Results table and the docstrings' \"Measured here\" lines "
                             "must say, naming the data TEXT, e.g. 'CIFAR-10' (for publishing a table)")
    parser.add_argument('--compare', metavar='DIR',
                        help="also write ablation-<preset>-vs-<its preset>.md and .png: each trick's delta in this "
                             "table beside its delta in the table in DIR (e.g. docs/cpu)")
    args = parser.parse_args(argv)
    root = Path(args.runs)
    runs, header, missing, damaged = read_runs(root)
    for whys in damaged.values():
        for why in whys:
            print(f"warning: {why}: left out of the table (delete it and run run_all.sh again to redo that run)",
                  file=sys.stderr)
    t = teacher(root)
    teacher_seconds = t['wall_seconds'] if t else 0.0
    if t:
        header['teacher'] = [f"{describe(t)} (trained by run_all.sh, the baseline's recipe)"]
    if not runs and damaged:
        raise SystemExit(f"error: every run under {root} is damaged, e.g. {next(iter(damaged.values()))[0]}: delete "
                         "them and run run_all.sh again")
    if not runs:
        raise SystemExit(f"error: no finished run under {root} (expected {root}/<row>/s<seed>/result.json)")
    diverged = diverged_runs(root, list(runs) + missing + list(damaged))
    missing = [r for r in missing if r not in diverged]
    preset = header.get('preset', [root.name])[0]
    header.setdefault('note', []).extend(args.note)
    out = Path(args.out or root)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file: give a folder for the table and plot")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file on the way (--out afile/sub), or a folder this user cannot write in
        raise SystemExit(f"error: --out {out}: cannot make that folder ({e.strerror}): give another") from None
    text, deltas = table(runs, header, missing, preset, damaged, diverged, teacher_seconds)
    (out / f'ablation-{preset}.md').write_text(text)
    print(text)
    print(f"wrote {out / f'ablation-{preset}.md'}")
    print(plot(runs, deltas, out / f'ablation-{preset}.png'))
    if args.compare:
        other, other_header, _, _ = read_runs(Path(args.compare))
        if not other:
            raise SystemExit(f"error: --compare {args.compare}: no finished run there (expected "
                             "<row>/s<seed>/result.json)")
        tables = [(preset, finished_rows(runs, header)),
                  (other_header.get('preset', [Path(args.compare).name])[0], finished_rows(other, other_header))]
        planned = dict.fromkeys(planned_rows(header) + list(runs))
        training = [row for row in planned if row in other and not all(row in done for _, done in tables)]
        name = f"ablation-{tables[0][0]}-vs-{tables[1][0]}"
        compared, compared_deltas = comparison(tables, [t, teacher(Path(args.compare))], training)
        (out / f'{name}.md').write_text(compared)
        print(f"\n{compared}\nwrote {out / f'{name}.md'}")
        print(plot_comparison(tables, compared_deltas, out / f'{name}.png'))
    if args.data_name:
        readme, measured = published(runs, header, out / f'ablation-{preset}.md', args.data_name)
        print(f"\nREADME's Results table:\n\n{readme}")
        for script, said in measured.items():
            print(f"{script}'s docstring:\n" + ''.join(f"    {line}\n" for line in said))
    return text


if __name__ == '__main__':
    main(sys.argv[1:])
