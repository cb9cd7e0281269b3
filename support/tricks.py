"""A run's tricks: which modules they are, and the rules by which they compose on the command line.

A script's tricks are the script itself (when it defines any of the contract's names, see
common.py) and each module that `--with` names: a script beside common.py by its name, or a
trick's own file by its path. They compose in that order. Two of them cannot be combined when they
- define the same flag (largebatch.py and warmup.py both define --warmup-epochs),
- both define one of the replacing functions (two losses: ghmc.py and distill.py), or
- set one default of the loop to two values in their DEFAULTS, unless that flag is given on the
  command line, which settles it (pretrained.py's lr 0.01 and adamw.py's 0.001: pass --lr).
The run then stops with one line naming both.
"""
import argparse
import difflib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from support.flags import Parser, add_loop_flags, changed_flags, describe, fail

HERE = Path(__file__).resolve().parents[1]  # the folder of the scripts
REPLACING = {'loss': 'the loss', 'optimizer': 'the optimizer', 'schedule': 'the lr schedule',
             'evaluate': 'the evaluation', 'warmup_steps': 'the warmup'}
CONTRACT = ('add_args', 'DEFAULTS', 'model', 'param_groups', 'lr_factor', 'batch', 'init', 'start', 'after_step',
            *REPLACING)


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
