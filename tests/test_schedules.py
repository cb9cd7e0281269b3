"""The learning-rate schedules against their formulas: step decay, warmup, cosine, large batch."""
import math
from types import SimpleNamespace

import pytest

import common
import cosine
import largebatch
import warmup


def schedule(tricks, epochs=10, steps_per_epoch=20, **flags):
    """The lr at every step, as the loop computes it."""
    args = SimpleNamespace(**dict(dict(lr=0.1, epochs=epochs, milestones=[0.5, 0.75], warmup_epochs=None,
                                       batch_size=128), **flags))
    total = epochs * steps_per_epoch
    run = SimpleNamespace(args=args, total_steps=total, hooks=lambda name: common.hooks(tricks, name),
                          warmup_steps=common.replaced(tricks, 'warmup_steps', common.no_warmup)(total, args),
                          schedule=common.replaced(tricks, 'schedule', common.step_decay))
    return [common.learning_rate(run, t) for t in range(run.total_steps)]


def test_baseline_steps_down_at_half_and_three_quarters():
    lr = schedule([])
    assert lr[99] == 0.1 and lr[100] == pytest.approx(0.01) and lr[150] == pytest.approx(0.001)


def test_warmup_starts_above_zero_grows_linearly_and_reaches_the_base_lr():
    lr = schedule([warmup], epochs=100, warmup_epochs=5)  # 100 warmup steps
    assert lr[0] == pytest.approx(0.1 / 100) and lr[0] > 0
    assert all(b - a == pytest.approx(0.1 / 100) for a, b in zip(lr[:99], lr[1:100]))
    assert lr[99] == pytest.approx(0.1) and lr[100:1000] == [pytest.approx(0.1)] * 900


def test_warmup_default_is_five_epochs_but_at_most_a_tenth_of_the_run():
    args = SimpleNamespace(warmup_epochs=None, epochs=100)
    assert warmup.warmup_steps(1000, args) == 50  # 5 epochs of 10 steps
    args.epochs = 20
    assert warmup.warmup_steps(200, args) == 20  # 2 epochs: 10% of 20


def test_a_warmup_as_long_as_the_run_is_refused(run_args):
    with pytest.raises(SystemExit, match=r'--warmup-epochs 2: the run has 2 epochs; the warmup must end before'):
        common.main(warmup, run_args('--epochs', '2', '--warmup-epochs', '2'))


def test_cosine_matches_its_formula_from_the_peak_to_zero():
    lr = schedule([cosine])
    total = len(lr)
    for t in (0, 1, 57, 100, total - 1):
        assert lr[t] == pytest.approx(0.5 * (1 + math.cos(math.pi * t / (total - 1))) * 0.1)
    assert lr[0] == 0.1 and lr[-1] == pytest.approx(0, abs=1e-18)
    assert all(b < a for a, b in zip(lr, lr[1:]))  # no step decay left


def test_warmup_then_cosine_reaches_the_peak_exactly_and_ends_at_zero():
    lr = schedule([warmup, cosine], epochs=100, warmup_epochs=5)  # 100 warmup steps of 2000
    for t in range(100):
        assert lr[t] == pytest.approx(0.1 * (t + 1) / 100)
    assert lr[99] == 0.1 and lr[100] == 0.1  # the warmup ends at the peak, where the cosine starts
    for t in (100, 101, 500, 1999):  # then the cosine over the remaining 1900 steps
        assert lr[t] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * (t - 100) / 1899)))
    assert lr[-1] == pytest.approx(0, abs=1e-18)
    assert lr == pytest.approx(schedule([cosine, warmup], epochs=100, warmup_epochs=5))  # order does not matter


def test_largebatch_scales_the_lr_linearly_after_its_warmup():
    lr = schedule([largebatch], epochs=100, batch_size=1024, warmup_epochs=5)
    assert lr[99] == pytest.approx(0.8) and lr[0] == pytest.approx(0.008)
