"""Check that no measured figure of the old docs/results.md was lost when it became docs/*.md.

    python tools/docs_figures.py [REV]

reads docs/results.md as it was at git revision REV (default 03c1512, its last version), takes
every accuracy figure (a number followed by %) and every images-per-second figure (the numbers
in the img/s columns and rows of its tables, and the numbers right before "img/s" in its text),
and looks for each among the numbers of the docs/*.md files of the working tree (numbers are
compared, not their formatting: 15,699 = 15699, 583.0 = 583). The figures in MOVED were taken
out of the docs on purpose (figures that compare two versions of the code). Prints the missing
figures and exits 1, or one line with the count and exits 0.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REV = '03c1512'
# Figures dropped from docs on purpose: {number: context}
MOVED = {
    # The "smoke table" before and after the loop's restructuring: not a % or img/s figure, but
    # listed here so that the whole list of moved figures is in one place.
    '3.478': "smoke table, distill's train_loss before the restructuring (gluon-cv's 0.5 weights)",
    '6.956': "smoke table, distill's train_loss after it (the paper's Eq. 6 weights)",
}
NUMBER = r'(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.,])\d+(?:\.\d+)?(?![\w])'


def value(text):
    return float(text.replace(',', ''))


def figures(text):
    """{value: the figure as written} of the accuracy and img/s figures in text."""
    found = {}
    for m in re.finditer(r'(\d[\d,]*(?:\.\d+)?)\s*%', text):  # accuracies
        found.setdefault(value(m.group(1)), m.group(1) + '%')
    lines = text.splitlines()
    header = []
    for line in lines:  # tables: columns and rows headed img/s
        if not line.startswith('|'):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if not header:
            header = cells
            continue
        if set(line) <= set('|-: '):
            continue
        for i, cell in enumerate(cells):
            if 'img/s' in (header[i] if i < len(header) else '') or (i > 0 and 'img/s' in cells[0]):
                for n in re.findall(NUMBER, cell):
                    found.setdefault(value(n), n + ' img/s')
    prose = ' '.join(line for line in lines if not line.startswith('|'))
    prose = re.sub(r'\s+', ' ', prose)
    # text: the numbers right before img/s, with those joined to them ("513-593", "960 against
    # 546", "(a) 550.4, (b) 583.0", "262 and 307")
    joined = rf'(?:{NUMBER})(?:\s*(?:-|,|and|against)?\s*(?:\([a-z]\)\s*)?(?:{NUMBER}))*'
    for m in re.finditer(rf'({joined})\s*img/s', prose):
        for n in re.findall(NUMBER, m.group(1)):
            found.setdefault(value(n), n + ' img/s')
    return found


def main(argv):
    if argv[:1] in (['-h'], ['--help']):
        print(__doc__)
        return 0
    rev = argv[0] if argv else DEFAULT_REV
    shown = subprocess.run(['git', 'show', f'{rev}:docs/results.md'], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode:
        sys.exit(f"error: no docs/results.md at {rev} ({shown.stderr.strip()}): give a revision that has it")
    old = shown.stdout
    docs = ' '.join(p.read_text() for p in sorted((ROOT / 'docs').glob('*.md')))
    have = {value(n) for n in re.findall(NUMBER, docs)}
    moved = {value(n) for n in MOVED}
    wanted = figures(old)
    missing = {v: shown for v, shown in wanted.items() if v not in have and v not in moved}
    for v in sorted(missing):
        print(f'missing from docs/*.md: {missing[v]}')
    if missing:
        return 1
    print(f'{len(wanted)} figures of docs/results.md at {rev} ({len(wanted) - len(missing)} found in docs/*.md, '
          f'{len(moved & set(wanted))} moved out on purpose): none missing')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
