"""EMA of the weights: the update, its decay, what a run logs and reports with it, resume."""
import json

import pytest
import torch

import common
import ema
import evaluate
from conftest import interrupted_in_epoch_2


def test_ema_update_is_the_moving_average_of_weights_and_buffers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    average = ema.EMA(net, decay=0.9, warmup=False)
    old = {k: v.clone() for k, v in average.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net(torch.randn(2, 3, 8, 8))  # changes the BN running statistics
    new = net.state_dict()
    average.update()
    for k, v in average.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.9 * old[k] + 0.1 * new[k])
        else:
            assert torch.equal(v, new[k])  # num_batches_tracked: copied
    assert average.updates == 1


def test_ema_decay_warmup_and_default_scale_with_the_run():
    net = torch.nn.Linear(2, 2)
    average = ema.EMA(net, decay=0.999, warmup=True)
    before = average.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update()  # t = 0: d = min(0.999, 1/10)
    torch.testing.assert_close(average.module.weight, 0.1 * before + 0.9 * net.weight)
    assert 0.99 < ema.default_decay(11_700) < 0.999  # half-life of 234 steps
    assert ema.default_decay(10_000_000) == pytest.approx(0.9998)


def test_ema_run_logs_both_and_reports_the_average_when_asked(run_args, tmp_path, folder):
    result = common.main(ema, run_args('--epochs', '2'))
    row = [json.loads(line) for line in (tmp_path / 'run' / 'log.jsonl').read_text().splitlines()][-1]
    assert {'test_acc', 'ema_test_acc', 'ema_test_loss'} <= set(row)
    assert result['final_test_acc'] == row['test_acc']
    # the average in model.pt gives ema_test_acc again through evaluate.py --ema
    metrics = evaluate.main([str(tmp_path / 'run' / 'model.pt'), '--ema', '--data', str(folder), '--device', 'cpu',
                             '--cache-dir', str(tmp_path / 'cache')])
    assert metrics['test_acc'] == pytest.approx(row['ema_test_acc'])
    asked = common.main(ema, run_args('--epochs', '2', '--ema-eval', out='asked'))
    row2 = [json.loads(line) for line in (tmp_path / 'asked' / 'log.jsonl').read_text().splitlines()][-1]
    assert row2['test_acc'] == pytest.approx(row['ema_test_acc']) and 'raw_test_acc' in row2
    assert asked['final_test_acc'] == row2['test_acc']


def test_ema_resumes_exactly(run_args, tmp_path):
    flags = ('--epochs', '3', '--subset', '16')
    common.main(ema, run_args(*flags, out='straight'))
    interrupted_in_epoch_2(ema, run_args(*flags, out='killed'))
    common.main(ema, run_args(*flags, '--resume', out='killed'))
    a = torch.load(tmp_path / 'straight' / 'model.pt', weights_only=True)['extra']
    b = torch.load(tmp_path / 'killed' / 'model.pt', weights_only=True)['extra']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
