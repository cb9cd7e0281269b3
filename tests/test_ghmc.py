"""GHM-C against its definition and mmdet's running counts, and what it composes with."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import common
import ghmc


def ghm_run(bins, momentum=0.0):
    return SimpleNamespace(args=SimpleNamespace(ghm_bins=bins, ghm_momentum=momentum),
                           extra={'ghm_density': ghmc.Density(bins, 'cpu')})


def test_ghmc_with_one_bin_is_cross_entropy():
    logits, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    onehot = F.one_hot(y, 10).float()
    torch.testing.assert_close(ghmc.loss(logits, onehot, None, ghm_run(1)), F.cross_entropy(logits, y))
    q = torch.softmax(torch.randn(32, 10), 1)  # soft targets too
    torch.testing.assert_close(ghmc.loss(logits, q, None, ghm_run(1)), F.cross_entropy(logits, q))


def test_ghmc_weights_favour_rare_gradients():
    g = torch.tensor([0.01] * 28 + [0.95] * 4)  # many easy examples, few hard ones
    w = ghmc.ghm_weights(g, 10, 0.0)
    assert w[-1] > w[0] and w[-1] / w[0] == pytest.approx(28 / 4)
    assert w.mean() == pytest.approx(1.0)  # 2 bins used: sum w = N
    # g is half the L1 norm of the gradient p - q: 1 - p_y for a class id
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    p = torch.softmax(logits, 1)
    torch.testing.assert_close(0.5 * (p - F.one_hot(y, 3)).abs().sum(1), 1 - p[torch.arange(4), y])


def test_ghmc_momentum_keeps_running_counts_as_mmdet():
    state = ghmc.Density(4, 'cpu')
    w = ghmc.ghm_weights(torch.tensor([0.1, 0.1, 0.9, 0.9]), 4, 0.75, state)
    assert state.counts.tolist() == [0.5, 0, 0, 0.5]  # from 0: 0.25 x the first batch's counts
    assert w.tolist() == [4 / (0.5 * 2)] * 4  # N / (R_bin * m), as mmdet's GHMC
    ghmc.ghm_weights(torch.tensor([0.1, 0.1, 0.1, 0.1]), 4, 0.75, state)
    assert state.counts.tolist() == pytest.approx([0.75 * 0.5 + 0.25 * 4, 0, 0, 0.5])  # an empty bin keeps its count


def test_ghmc_trains_and_composes_with_soft_targets_but_not_with_another_loss(run_args, tmp_path):
    result = common.main(ghmc, run_args('--with', 'mixup', 'labelsmooth'))
    assert set(result['tricks']) == {'ghmc', 'mixup', 'labelsmooth'}
    with pytest.raises(SystemExit, match=r'ghmc\.py and distill\.py both replace the loss'):
        common.main(ghmc, run_args('--with', 'distill', out='x'))


def test_more_ghm_bins_than_1000_is_one_argparse_line_not_an_allocation_error(capsys):
    from support.tricks import parse
    with pytest.raises(SystemExit) as e:
        parse(ghmc, ['--ghm-bins', '100000000000'], common.RECIPE)
    assert e.value.code == 2 and 'argument --ghm-bins: must be in 1 .. 1000, got 100000000000' in capsys.readouterr().err
    assert parse(ghmc, ['--ghm-bins', '1000'], common.RECIPE)[0].ghm_bins == 1000
