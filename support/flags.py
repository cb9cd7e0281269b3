"""The command line: the loop's flags, the tricks' flags, and the rules by which tricks compose.

A script's tricks are the script itself (when it defines any of the contract's names, see
common.py) and each module named by `--with`. They compose in that order. Two of them cannot be
combined when they
- define the same flag (largebatch.py and warmup.py both define --warmup-epochs),
- both define one of the replacing functions (two losses: ghmc.py and distill.py), or
- set one default of the loop to two values in their DEFAULTS, unless that flag is given on the
  command line, which settles it (pretrained.py's lr 0.01 and adamw.py's 0.001: pass --lr).
The run then stops with one line naming both.
"""
import argparse
import difflib
import hashlib
import importlib
import importlib.util
import math
import os
import re
import sys
import traceback
from pathlib import Path

import augment
from support import datasets
import models

HERE = Path(__file__).resolve().parents[1]  # the folder of the scripts
REPLACING = {'loss': 'the loss', 'optimizer': 'the optimizer', 'schedule': 'the lr schedule',
             'evaluate': 'the evaluation', 'warmup_steps': 'the warmup'}
CONTRACT = ('add_args', 'DEFAULTS', 'model', 'param_groups', 'lr_factor', 'batch', 'init', 'start', 'after_step',
            *REPLACING)


def fail(message):
    """Stop the run with one line naming the cause and the fix."""
    raise SystemExit(f"error: {message}")


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------- flag values

def at_least(minimum, kind=int):
    def parse(text):
        value = kind(text)
        if not math.isfinite(value) or value < minimum:
            what = 'a finite number ' if kind is float else ''
            raise argparse.ArgumentTypeError(f"must be {what}>= {minimum}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def between(low, high, low_open=False, high_open=False, why=''):
    """A float in the interval from low to high; `open` ends exclude their bound; `why` follows the range in
    the error (where the bound comes from)."""
    def parse(text):
        value = float(text)
        if not (low < value if low_open else low <= value) or not (value < high if high_open else value <= high):
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}"
                                             f"{')' if high_open else ']'}{why}, got {text}")
        return value
    parse.__name__ = 'float'
    return parse


def whole_between(low, high, why=''):
    """A whole number in low .. high; `why` follows the range in the error."""
    def parse(text):
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low} .. {high}{why}, got {text}")
        return value
    parse.__name__ = 'int'  # argparse names it in "invalid int value: 'x'"
    return parse


def usable_cpus():
    """The CPUs this process may run on: its affinity mask where the system has one (a container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


# torch's Beta sampler clamps each of its two gamma draws at float32's smallest normal number (1.2e-38) and
# returns g1 / (g1 + g2): below alpha 0.01 both are clamped for a share of the draws, which come out exactly
# 0.5 where Beta(alpha, alpha) lies near 0 or 1 (1 in 17 draws at 0.002, none in 200,000 at 0.01); below 1e-45
# alpha is 0 in float32 and it raises. Above 1e38 it is no float32 number (3.4e38 the largest) and every draw
# comes out 1.2e-38, not 0.5.
beta_alpha = between(0.01, 1e38, why=" (torch's Beta sampler draws wrong values outside it)")


fraction = between(0, 1, high_open=True)                       # [0, 1): momentum, val split, smoothing
positive_fraction = between(0, 1, low_open=True, high_open=True)
unit_interval = between(0, 1)                                  # [0, 1]: a probability, a weight


def seed(text):
    """A seed: the loop draws epoch orders from seed x 100003 + epoch, which must fit in int64."""
    value = int(text)
    if not 0 <= value < 2 ** 31:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**31 - 1, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)  # --weight-d is not --weight-decay: flags are checked by name

    def error(self, message):  # one line, not the whole usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class Flags:
    """What add_args gets: add_argument, which also records who defines which flag."""

    def __init__(self, group, owner, owners):
        self.group, self.owner, self.owners, self.dests = group, owner, owners, []

    def add_argument(self, *names, **kwargs):
        for name in names:
            if name in self.owners:
                fail(f"{self.owners[name][0]} and {self.owner} both define {name}: they cannot be combined")
        action = self.group.add_argument(*names, **kwargs)
        self.owners.update({name: (self.owner, action.dest) for name in names})
        self.dests.append(action.dest)
        return action


def add_loop_flags(flags, recipe):
    """The flags every script shares; the baseline's hyper-parameters default to `recipe` (common.RECIPE)."""
    a = flags.add_argument
    a('--data', default='data', metavar='DIR',
      help='CIFAR is downloaded here if missing; or an ImageFolder tree with train/ and test/ (or val/)')
    a('--dataset', choices=('cifar10', 'cifar100', 'folder'),
      help='default: folder when DIR holds class folders under train/ (or seg_train/), else cifar10')
    a('--arch', choices=models.ARCHS, default=recipe['arch'],
      help='default: resnet20 for images up to 64 px, resnet18 above')
    a('--epochs', type=at_least(1), default=recipe['epochs'], help='training epochs (default: %(default)s)')
    a('--batch-size', type=at_least(1), default=recipe['batch_size'],
      help='global batch size, split across processes under torchrun (default: %(default)s)')
    a('--lr', type=positive_float, default=recipe['lr'], help='peak learning rate (default: %(default)s)')
    a('--momentum', type=fraction, default=recipe['momentum'], help='SGD momentum (default: %(default)s)')
    a('--nesterov', action=argparse.BooleanOptionalAction, default=recipe['nesterov'],
      help='Nesterov momentum (default: %(default)s)')
    a('--weight-decay', type=at_least(0.0, float), default=recipe['weight_decay'],
      help='weight decay (default: %(default)s)')
    a('--milestones', type=positive_fraction, nargs='*', default=recipe['milestones'], metavar='F',
      help='step decay: multiply the lr by 0.1 at these fractions of the steps (after any warmup; '
           f"default: {' '.join(map(str, recipe['milestones']))})")
    a('--seed', type=seed, default=0, help='random seed, 0 .. 2**31 - 1 (default: %(default)s)')
    a('--device', default='auto', help='auto (cuda, then mps, else cpu), cpu, cuda, cuda:1, mps')
    cpus = usable_cpus()  # more threads than CPUs: 135 s a step at 1,000 on 2 cores; a crash at 100,000
    a('--threads', type=whole_between(1, cpus, ' (the CPUs this process may use)'),
      help=f'CPU threads for PyTorch, 1 .. {cpus} here (default: all cores)')
    a('--amp', nargs='?', const='auto', choices=('auto', 'fp16', 'bf16'),
      help='mixed precision; auto: bf16 where the device has it (CUDA from Ampere on, a CPU with AVX512-BF16 or '
           'AMX), else fp16 + grad scaler on CUDA; fp16 or bf16 to choose')
    a('--channels-last', action=argparse.BooleanOptionalAction, default=True,
      help='channels_last memory format (default: on; faster for these convnets, see docs/speed.md)')
    a('--compile', nargs='?', const='default', choices=('default', 'reduce-overhead', 'max-autotune'),
      help="torch.compile the model, in this mode (default: torch.compile's own; reduce-overhead uses CUDA graphs)")
    a('--cuda-graph', action=argparse.BooleanOptionalAction,
      help='on a GPU, run the training step as one CUDA graph (default: on where it applies; never with --compile)')
    a('--subset', type=at_least(1), metavar='N', help='train on N images only, for quick runs')
    a('--test-subset', type=at_least(1), metavar='N', help='test on N images only, for quick runs')
    a('--val-split', type=fraction, default=0.0, metavar='F',
      help='hold out this fraction of train for model selection (val_acc); the same images in every run')
    a('--image-size', type=at_least(8), metavar='S',
      help='folder data: training size in px (default: the images own size up to 64 px, else 224)')
    a('--color-jitter', type=fraction, default=recipe['color_jitter'], metavar='S',
      help='scale brightness, contrast, saturation by U(1-S, 1+S) per image (the paper: 0.4; default: %(default)s)')
    a('--lighting', type=between(0, 1, why=" (up to 10 x the paper's 0.1)"),
      default=recipe['lighting'], metavar='STD',
      help="AlexNet's PCA lighting noise with this std, 0 .. 1 (the paper: 0.1; default: %(default)s)")
    a('--test-scale', type=positive_float, default=1.0, metavar='F',
      help='folder data: test at F x the training size (FixRes; default: %(default)s)')
    a('--init', choices=('default', 'xavier'), default=recipe['init'],
      help="weight init: the nets' own (Kaiming normal for the ResNets) or xavier, the paper's baseline "
           '(Xavier uniform for conv and linear weights)')
    a('--weights', metavar='NAME|PATH', help='start from these weights: a torchvision name such as '
      'IMAGENET1K_V1 (downloads) or a state-dict file (offline)')
    a('--out', metavar='DIR', help='run directory (default: runs/<script>[+<with>...][-<flag>=<value>...]-<arch>-'
      '<data>-s<seed>, naming each flag given another value than its default)')
    a('--resume', action='store_true', help='continue from DIR/last.pt; skip a finished run')
    a('--force', action='store_true', help='overwrite a finished or unfinished run in DIR')
    a('--cache-dir', default=datasets.DEFAULT_CACHE, metavar='DIR',
      help='where decoded folder data sets are cached (default: %(default)s)')
    a('--stream', action='store_true', help='stream folder data through DataLoader workers even if it fits in memory')
    a('--tensorboard', action='store_true', help='also log the per-epoch figures for TensorBoard, in DIR/tensorboard')
    a('--summary', action='store_true', help="print each layer's output shape and parameter count before training")
    a('--with', dest='with_', nargs='+', action='extend', default=[], metavar='NAME|PATH',
      help='also switch on the tricks of NAME.py beside common.py, or of the file PATH (a trick of your own)')


def hooks(tricks, name):
    """The tricks' functions called `name`, in the order they compose."""
    return [getattr(t, name) for t in tricks if hasattr(t, name)]


def replaced(tricks, name, default):
    """The trick's function that replaces the loop's own `name`, or the loop's own."""
    return (hooks(tricks, name) or [default])[0]


def trick_name(module):
    return Path(module.__file__).stem


def defines_a_trick(module):
    return any(hasattr(module, name) for name in CONTRACT)


def with_words(argv):
    """The words given to --with, in order: those after each --with up to the next flag, and --with=A's."""
    words = []
    for i, arg in enumerate(argv):
        if arg.startswith('--with='):
            words.append(arg.split('=', 1)[1])
        elif arg == '--with':
            for word in argv[i + 1:]:
                if word.startswith('-'):
                    break
                words.append(word)
    return words


def import_tricks(script, argv):
    """The script's module and the --with modules, in that order (those that define a trick)."""
    tricks = [script]
    for word in with_words(argv):
        module = import_trick(word)
        if trick_name(module) in map(trick_name, tricks):
            fail(f"--with {word}: {trick_name(module)} is already on")
        tricks.append(module)
    return [t for t in tricks if defines_a_trick(t)]


def trick_choices():
    """The scripts beside common.py that define a trick, by name."""
    return sorted(p.stem for p in HERE.glob('*.py') if p.stem != 'common' and
                  any(f'def {n}(' in p.read_text() or f'{n} =' in p.read_text() for n in CONTRACT))


def import_trick(word):
    """The module a --with word names: a script beside common.py by its name (cosine, cosine.py), else a trick's
    own file by its path (../mytricks/cutout.py, or cutout.py in the current folder), named by the file's stem."""
    name = word.removesuffix('.py')
    is_path = Path(word).name != word  # it holds a folder: ../mytricks/cutout.py, ./cutout.py
    if not is_path and not (name.isidentifier() and (HERE / f'{name}.py').exists()):
        if not Path(word).is_file():  # not even a file in the current folder (cutout.py)
            close = difflib.get_close_matches(name, trick_choices(), n=1)
            fail(f"--with {word}: {name}.py is not a script here: no trick has that name"
                 f"{f' (did you mean {close[0]}?)' if close else ''}; choose from {', '.join(trick_choices())}, "
                 "or give the path of your trick's file (--with PATH/TO/trick.py)")
        is_path = True
    path = Path(word).resolve() if is_path else HERE / f'{name}.py'
    if is_path:
        if not path.is_file():
            fail(f"--with {word}: {'that is a folder' if path.is_dir() else 'there is no such file'} ({path}); "
                 "give the path of a trick's .py file")
        if path.suffix != '.py':
            fail(f"--with {word}: {path.name} is not a Python file (.py): a trick is a .py file")
    if path.parent == HERE:
        name = path.stem
        if name == 'common':
            fail(f"--with {word}: common.py is the loop itself, not a trick; choose from {', '.join(trick_choices())}")
        module = loaded(word, path, lambda: importlib.import_module(name))
        if not defines_a_trick(module):
            fail(f"--with {word}: {name}.py defines no trick; choose from {', '.join(trick_choices())}")
        return module
    module = loaded(word, path, lambda: module_from_file(word, path))
    if not defines_a_trick(module):
        fail(f"--with {word}: {path} defines no trick: none of common.py's contract ({', '.join(CONTRACT)})")
    return module


def module_from_file(word, path):
    """The trick's file loaded as a module named by its stem (result.json, the run folder, its flags' group), a
    name that no other module may hold: two tricks or modules of one name could not be told apart."""
    name = path.stem
    if (HERE / f'{name}.py').exists():
        fail(f"--with {word}: {name} is the name of {HERE / f'{name}.py'}: rename {path} to run it beside that one")
    if name in sys.modules:
        other = getattr(sys.modules[name], '__file__', None)
        if other and Path(other).resolve() == path:
            return sys.modules[name]  # loaded already (tests, or a trick that imports it)
        fail(f"--with {word}: {name} is the name of the module {other or name} already: rename {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as `import` does: a dataclass, or pickle, finds its module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def loaded(word, path, load):
    """load(), and what goes wrong in the trick's code said in one line: the file and line, and the error."""
    try:
        return load()
    except SyntaxError as e:
        fail(f"--with {word}: {e.filename}, line {e.lineno}: SyntaxError: {e.msg}: fix it there")
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith('<frozen')]
        mine = [f for f in frames if Path(f.filename).resolve() == path] or frames
        where = f"{mine[-1].filename}, line {mine[-1].lineno}" if mine else str(path)
        fix = 'install the module or fix the import' if isinstance(e, ImportError) else 'fix it there'
        fail(f"--with {word}: {where}: {type(e).__name__}: {' '.join(str(e).split())}: {fix}")


def with_word(module):
    """How result.json records a --with trick: a script beside common.py by its name, any other by its file's
    absolute path, which means the same file from any folder (a relative path, only from where it was given)."""
    path = Path(module.__file__).resolve()
    return path.stem if path.parent == HERE else str(path)


def bad_batch(hook, returned):
    """The line for a batch hook that returned something else than (images, targets): the hook, where it is
    defined, and what it returned."""
    def kind(value):
        return f"a tensor of shape {tuple(value.shape)}" if hasattr(value, 'shape') else \
            'None' if value is None else f"a {type(value).__name__}"
    code = getattr(hook, '__code__', None)
    where = f"{code.co_filename}, line {code.co_firstlineno}" if code else getattr(hook, '__module__', '?')
    what = f"a {type(returned).__name__} of {len(returned)}: {', '.join(map(kind, returned))}" \
        if isinstance(returned, (tuple, list)) else f"only {kind(returned)}"
    return (f"{where}: batch() returned {what}, not (images, targets): end it with `return images, targets`, "
            "two tensors")


def parse(script, argv, recipe):
    """(args, tricks, trick_flags, changed): the flags of the loop (their defaults from `recipe`) and of
    every trick, once the tricks are known to compose. trick_flags holds, per trick, its flags and the
    defaults it changed; changed, the flags the command changes from the script's defaults (run_dir)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    tricks = import_tricks(script, argv)
    parser = Parser(prog=f'{trick_name(script)}.py', description=script.__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    owners = {}  # option string -> (the file that defines it, its dest)
    add_loop_flags(Flags(parser, 'common.py', owners), recipe)
    own = {}
    for trick in tricks:
        flags = Flags(parser.add_argument_group(f'{trick_name(trick)}.py'), f'{trick_name(trick)}.py', owners)
        if hasattr(trick, 'add_args'):
            trick.add_args(flags)
        own[trick_name(trick)] = flags.dests
    for name, what in REPLACING.items():
        defined = [f'{trick_name(t)}.py' for t in tricks if hasattr(t, name)]
        if len(defined) > 1:
            fail(f"{' and '.join(defined)} both replace {what} ({name}): they cannot be combined")
    flag_of = {dest: option for option, (_, dest) in owners.items() if option.startswith('--')}
    defaults, set_by = {}, {}
    for trick in tricks:
        name = trick_name(trick)
        for dest, value in getattr(trick, 'DEFAULTS', {}).items():
            if dest not in flag_of:
                fail(f"{name}.py: DEFAULTS names {dest!r}, which is no flag of the loop or of a trick")
            given = any(a == flag_of[dest] or a.startswith(flag_of[dest] + '=') for a in argv)
            if dest in defaults and defaults[dest] != value and not given:
                fail(f"{set_by[dest]}.py and {name}.py both change {dest} ({describe(defaults[dest])} vs "
                     f"{describe(value)}): pass {flag_of[dest]} to choose")
            defaults[dest], set_by[dest] = value, name
            own[name].append(dest)
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    args.script = trick_name(script)
    args.with_ = [with_word(t) for t in tricks if t is not script]  # every --with trick, by name or by absolute path
    trick_flags = {trick_name(t): {d: getattr(args, d) for d in own[trick_name(t)]} for t in tricks}
    return args, tricks, trick_flags, changed_flags(args, parser)


NAMED_ELSEWHERE = {'arch', 'dataset', 'seed', 'script'}  # the end of a default run folder's name


def changed_flags(args, parser):
    """The flags that --resume compares (all but the runtime-only ones) whose value is not the script's default,
    as 'name=value' words in the order of their names: what names a default run folder."""
    from support.archive import RUNTIME_ONLY_FLAGS  # archive imports this module
    words = []
    for dest in sorted(vars(args)):
        value = describe(getattr(args, dest))
        if dest in RUNTIME_ONLY_FLAGS | NAMED_ELSEWHERE or value == describe(parser.get_default(dest)):
            continue
        words.append(f"{dest.replace('_', '-')}={folder_word(value)}")
    return words


def fill_in_defaults(args, changed):
    """Find the data set behind the flags, and fill in the defaults that follow from it: --dataset,
    --image-size, --arch (resnet20 up to 64 px, else resnet18) and --out (named with the `changed` flags,
    see run_dir). Returns the datasets.Source."""
    try:
        source = datasets.find_source(args.data, args.dataset, args.image_size)
    except datasets.DataError as e:
        fail(str(e))
    args.dataset, args.image_size = source.dataset, source.image_size
    if args.test_scale != 1 and args.image_size <= augment.PAD_CROP_MAX:
        fail(f"--test-scale {args.test_scale}: images of {args.image_size} px are tested whole, at their own size; "
             f"testing at another size needs folder data above {augment.PAD_CROP_MAX} px")
    args.arch = args.arch or ('resnet20' if args.image_size <= augment.PAD_CROP_MAX else 'resnet18')
    if args.compile and args.cuda_graph:
        fail(f"--cuda-graph and --compile {args.compile}: the graph captures eager kernels; torch.compile's own "
             "CUDA graphs are --compile reduce-overhead: drop one of them")
    args.out = str(run_dir(args, changed))
    return source


def run_dir(args, changed):
    """--out, or runs/ and a name for the command: the script and its --with tricks, the flags it changes
    from their defaults, the arch, the data and the seed. One command, one folder: a sweep over a flag
    needs no --out, and the same command again finds its own run (--resume)."""
    if args.out:
        return Path(args.out)
    data = args.dataset if args.dataset != 'folder' else Path(args.data).resolve().name
    name = '-'.join(['+'.join([args.script] + [folder_word(Path(w).stem) for w in args.with_]), *changed,
                     args.arch, folder_word(data), f's{args.seed}'])
    if len(name) > 100:  # file systems take 255 bytes; a long name keeps its start and a digest of the whole
        name = f"{name[:91]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return Path('runs') / name


def folder_word(value):
    """A flag's value as a part of a folder name: a path by its file name and a short digest of where it is
    (runs/a/model.pt and runs/b/model.pt are two teachers), lists joined by commas, no character a shell or a
    file system would take otherwise."""
    if isinstance(value, list):
        return ','.join(map(folder_word, value))
    text = str(value)
    if isinstance(value, str) and '/' in value:
        text = f"{Path(value).name}.{hashlib.sha1(str(Path(value).resolve()).encode()).hexdigest()[:6]}"
    return re.sub(r'[^A-Za-z0-9.,+=_-]', '_', text)


def describe(value):
    """A value as result.json and error messages show it."""
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
