"""The regularization tricks against their definitions: label smoothing, mixup, CutMix, RandAugment."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import common
import cutmix
import labelsmooth
import mixup
import randaugment


# ---------------------------------------------------------------- label smoothing and mixup

def soft_cross_entropy(logits, q):
    return -(q * F.log_softmax(logits, 1)).sum(1).mean()


def test_label_smoothing_equals_torch_label_smoothing():
    logits, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    q = labelsmooth.smooth(F.one_hot(y, 10).float(), 0.1)
    torch.testing.assert_close(q.sum(1), torch.ones(32))
    assert q[0, y[0]] == pytest.approx(1 - 0.1 + 0.01) and q.min() == pytest.approx(0.01)
    for loss in (soft_cross_entropy(logits, q), F.cross_entropy(logits, q)):
        torch.testing.assert_close(loss, F.cross_entropy(logits, y, label_smoothing=0.1))


def test_mixup_with_lambda_one_is_plain_cross_entropy_and_mixes_convexly():
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 5, (8,))
    onehot = F.one_hot(y, 5).float()
    same_x, same_y = mixup.mix(x, onehot, 1.0)
    assert torch.equal(same_x, x)
    logits = torch.randn(8, 5)
    torch.testing.assert_close(F.cross_entropy(logits, same_y), F.cross_entropy(logits, y))
    mx, my = mixup.mix(x, onehot, 0.3)
    torch.testing.assert_close(mx, 0.3 * x + 0.7 * x.flip(0))
    torch.testing.assert_close(my.sum(1), torch.ones(8))


def test_mixup_draws_lambda_per_batch_and_composes_with_label_smoothing():
    args = SimpleNamespace(alpha=0.2, smoothing=0.1)
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 5, (8,))
    torch.manual_seed(0)
    mx, my = mixup.batch(x, F.one_hot(y, 5).float(), args)
    lam = my[0, y[0]].item() if y[0] != y[-1] else None
    _, q = labelsmooth.batch(mx, my, args)
    torch.testing.assert_close(q.sum(1), torch.ones(8))
    # smoothing the mixed target = mixing the smoothed targets
    torch.manual_seed(0)
    _, smoothed_then_mixed = mixup.batch(x, labelsmooth.smooth(F.one_hot(y, 5).float(), 0.1), args)
    torch.testing.assert_close(q, smoothed_then_mixed)
    assert lam is None or 0 <= lam <= 1


# ---------------------------------------------------------------- CutMix

@pytest.mark.parametrize('lam, cy, cx', [(0.5, 16, 16), (0.3, 0, 0), (0.9, 31, 5), (0.01, 20, 31)])
def test_cutmix_box_lies_inside_and_lambda_is_the_kept_area(lam, cy, cx):
    top, bottom, left, right = cutmix.cutmix_box(32, 32, lam, cy, cx)
    assert 0 <= top <= bottom <= 32 and 0 <= left <= right <= 32
    x = torch.rand(4, 3, 32, 32)
    y = F.one_hot(torch.tensor([0, 1, 2, 3]), 5).float()
    mixed, targets, true_lam = cutmix.cutmix(x, y, (top, bottom, left, right))
    assert true_lam == pytest.approx(1 - (bottom - top) * (right - left) / (32 * 32))
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    torch.testing.assert_close(targets[0, 0], torch.tensor(true_lam))
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[top:bottom, left:right] = True
    assert torch.equal(mixed[:, :, inside], x.flip(0)[:, :, inside])  # the box comes from the partner
    assert torch.equal(mixed[:, :, ~inside], x[:, :, ~inside])  # the rest is the image's own


def test_cutmix_prob_zero_is_exactly_no_cutmix():
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 3, (8,))
    args = SimpleNamespace(cutmix_prob=0.0, cutmix_alpha=1.0, num_classes=3)
    for _ in range(100):  # every batch comes back untouched, the very tensors (the augmentation draws from
        out_x, out_y = cutmix.batch(x, y, args)  # its own generator, so the run is the baseline's)
        assert out_x is x and out_y is y


def test_cutmix_composes_with_mixup(run_args):
    result = common.main(cutmix, run_args('--cutmix-prob', '1', '--with', 'mixup'))
    assert set(result['tricks']) == {'cutmix', 'mixup'}


# ---------------------------------------------------------------- RandAugment

def test_randaugment_keeps_dtype_shape_and_range_and_n0_is_identity():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = randaugment.rand_augment(x, 2, 9)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert (out != x).flatten(1).any(1).float().mean() > 0.5  # most images changed
    assert torch.equal(randaugment.rand_augment(x, 0, 9), x)
    floats = torch.rand(16, 3, 32, 32)
    aug, y = randaugment.batch(floats, torch.arange(16), SimpleNamespace(ra_n=2, ra_m=9))
    assert aug.dtype == torch.float32 and aug.shape == floats.shape and 0 <= aug.min() and aug.max() <= 1
    same, _ = randaugment.batch(floats, y, SimpleNamespace(ra_n=0, ra_m=9))
    assert (same - floats).abs().max() <= 0.5 / 255  # only the uint8 rounding


def test_randaugment_clamps_what_colour_augmentation_pushed_outside_the_range():
    images = torch.full((4, 3, 8, 8), 0.5)
    images[0], images[1] = -0.01, 1.01  # as lighting can leave them
    out, _ = randaugment.batch(images, None, SimpleNamespace(ra_n=0, ra_m=9))
    assert out[0].eq(0).all() and out[1].eq(1).all()  # not 253/255 and 2/255: no wrap-around


def test_randaugment_applies_each_op_per_image():
    torch.manual_seed(1)
    x = torch.randint(0, 256, (200, 3, 16, 16), dtype=torch.uint8)
    out = randaugment.rand_augment(x, 1, 30)
    changed = (out != x).flatten(1).any(1)
    assert 0.5 < changed.float().mean() < 1  # identity and a few no-op draws leave some images alone


# ---------------------------------------------------------------- the Beta sampler's range

def test_torchs_beta_sampler_returns_exact_halves_below_alpha_0_01_which_is_why_mixup_and_cutmix_refuse_it():
    """Both gamma draws clamped at float32's smallest normal number give 0.5, where Beta(alpha, alpha) lies near
    0 or 1: 1 in 17 draws at 0.002, none at 0.01 (support/flags.py's beta_alpha). If torch fixes it, the bound
    can go."""
    torch.manual_seed(0)
    assert (torch.distributions.Beta(0.002, 0.002).sample((20_000,)) == 0.5).sum() > 500
    assert (torch.distributions.Beta(0.01, 0.01).sample((20_000,)) == 0.5).sum() == 0


@pytest.mark.parametrize('script, flag, value', [
    (mixup, '--alpha', '1e-50'), (mixup, '--alpha', '0.005'), (mixup, '--alpha', '1e39'),
    (cutmix, '--cutmix-alpha', '1e-60'), (cutmix, '--cutmix-alpha', '0')])
def test_an_alpha_outside_what_the_beta_sampler_draws_right_is_one_argparse_line(script, flag, value, capsys):
    from support.tricks import parse
    with pytest.raises(SystemExit) as e:
        parse(script, [flag, value], common.RECIPE)
    assert e.value.code == 2
    assert (f"argument {flag}: must be in [0.01, 1e+38] (torch's Beta sampler draws wrong values outside it), "
            f"got {value}") in capsys.readouterr().err
    assert parse(script, [flag, '0.01'], common.RECIPE)[0].__dict__[flag[2:].replace('-', '_')] == 0.01
