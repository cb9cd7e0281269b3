"""The optimizer tricks: no bias decay's parameter groups, AdamW's decoupled weight decay."""
from types import SimpleNamespace

import torch

import adamw
import common
import models
import nobiasdecay


def test_no_bias_decay_splits_weights_from_biases_and_bn_without_loss_or_duplicates():
    model = models.build('resnet20', 10)
    groups = [{'params': list(model.parameters()), 'weight_decay': 5e-4}]
    split = nobiasdecay.param_groups(groups, model, SimpleNamespace())
    ids = [id(p) for g in split for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # nothing lost or counted twice
    by_name = {id(p): n for n, p in model.named_parameters()}
    decayed = {by_name[id(p)] for g in split if g['weight_decay'] > 0 for p in g['params']}
    free = {by_name[id(p)] for g in split if g['weight_decay'] == 0 for p in g['params']}
    assert all(n.endswith('weight') and 'bn' not in n and 'shortcut.1' not in n for n in decayed)
    assert 'fc.bias' in free and 'bn1.weight' in free and 'bn1.bias' in free
    assert 'fc.weight' in decayed and 'conv1.weight' in decayed
    torch.optim.SGD(split, lr=0.1)  # a valid set of groups


def test_adamw_decays_the_weights_not_the_gradient():
    w = torch.nn.Parameter(torch.ones(3))
    opt = adamw.optimizer([{'params': [w], 'weight_decay': 0.05}], SimpleNamespace(adam=False, lr=1e-3, weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW)
    w.grad = torch.zeros(3)  # no loss gradient: only the decay acts
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 1 - 1e-3 * 0.05))  # w - lr * lambda * w
    v = torch.nn.Parameter(torch.ones(3))
    plain = adamw.optimizer([{'params': [v], 'weight_decay': 0.05}], SimpleNamespace(adam=True, lr=1e-3, weight_decay=0.05))
    assert type(plain) is torch.optim.Adam
    v.grad = torch.zeros(3)
    plain.step()  # L2 in the gradient, then Adam's normalisation: a full lr-sized step
    torch.testing.assert_close(v.detach(), torch.full((3,), 1 - 1e-3), atol=1e-6, rtol=0)


def test_adamw_keeps_the_groups_decay_so_nobiasdecay_composes(run_args):
    result = common.main(adamw, run_args('--with', 'nobiasdecay'))
    assert result['args']['lr'] == 1e-3 and result['args']['weight_decay'] == 0.05
    assert result['tricks']['adamw'] == {'adam': False, 'lr': 1e-3, 'weight_decay': 0.05}
    run = common.prepare(adamw, run_args('--with', 'nobiasdecay', out='again'))
    assert type(run.optimizer) is torch.optim.AdamW and {g['weight_decay'] for g in run.optimizer.param_groups} == {
        0.0, 0.05}
