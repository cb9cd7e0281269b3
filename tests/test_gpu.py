"""The CUDA paths (skipped without a GPU; tools/gpu.sh runs them on one): the step as one
CUDA graph against the eager step, a graph replayed at another lr, resume across the two, no host
sync in the step loop; fp16 + grad scaler, bf16, --compile, channels_last, data held on the GPU,
--resume, a GPU-trained model.pt on a CPU-only machine, and two runs at once on one GPU."""
import json
import os
import subprocess
import sys

import pytest
import torch

import adamw
import baseline
import common
import cosine
import cutmix
import distill
import ema
import evaluate
import ghmc
import mixup
import randaugment
from conftest import REPO, interrupted_in_epoch_2, run_argv
from support import cuda_graph

pytestmark = pytest.mark.gpu


@pytest.fixture
def cifar_args(cifar_copy, tmp_path):
    """argv for a short run on 1,000 real CIFAR-10 images (300 test) on the GPU."""
    return run_argv(cifar_copy, tmp_path, epochs=3, batch_size=50, device='cuda')


def log_rows(path):
    return [json.loads(line) for line in (path / 'log.jsonl').read_text().splitlines()]


@pytest.fixture(scope='module')
def fp32_acc(cifar_copy, tmp_path_factory):
    """The fp32 reference: 3 epochs on the GPU reach 25-35% here; half precision must land within noise."""
    tmp = tmp_path_factory.mktemp('fp32')
    result = common.main(baseline, run_argv(cifar_copy, tmp, epochs=3, batch_size=50, device='cuda')())
    return result['final_test_acc']


@pytest.mark.parametrize('dtype, scaled', [('fp16', True), ('bf16', False)])
def test_half_precision_trains_like_fp32(dtype, scaled, cifar_args, tmp_path, fp32_acc, capsys):
    result = common.main(baseline, cifar_args('--amp', dtype))
    assert f'amp {"float16" if dtype == "fp16" else "bfloat16"}' in capsys.readouterr().out
    rows = log_rows(tmp_path / 'run')
    assert all(torch.isfinite(torch.tensor(r['train_loss'])) for r in rows)
    assert rows[-1]['train_loss'] < rows[0]['train_loss']
    assert all(r['train_ce'] == r['train_loss'] for r in rows)  # the baseline's loss, also out of bf16's graph
    assert abs(result['final_test_acc'] - fp32_acc) < 8  # 300 test images, 3 epochs: a few points of noise
    scaler = torch.load(tmp_path / 'run' / 'last.pt', weights_only=True)['scaler']
    assert bool(scaler) == scaled  # GradScaler's state only where fp16 needs it


def test_compile_trains_and_its_model_pt_loads_uncompiled(cifar_args, tmp_path, fp32_acc):
    result = common.main(baseline, cifar_args('--amp', '--compile'))
    assert result['device'].startswith('cuda')
    assert abs(result['final_test_acc'] - fp32_acc) < 8
    metrics = evaluate.main([str(tmp_path / 'run' / 'model.pt'), '--data', cifar_args()[1], '--device', 'cuda',
                             '--cache-dir', str(tmp_path / 'cache')])
    assert metrics['test_acc'] == pytest.approx(result['final_test_acc'], abs=1.0)  # amp vs fp32 evaluation


@pytest.mark.parametrize('channels_last', [True, False])
def test_data_stays_on_the_gpu_in_the_memory_format_asked_for(channels_last, cifar_args):
    flag = '--channels-last' if channels_last else '--no-channels-last'
    run = common.prepare(baseline, cifar_args(flag))
    assert run.data.train.images.device.type == 'cuda' and run.data.train.images.dtype == torch.uint8
    x, targets = next(common.train_batches(run, 0))
    assert x.device.type == 'cuda' and targets.device.type == 'cuda'
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    conv = run.net.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    losses = common.train_step(run, x, targets)  # [loss, train_ce]
    assert losses.device.type == 'cuda' and torch.isfinite(losses).all()


def test_resume_on_the_gpu(cifar_args, tmp_path):
    straight = common.main(baseline, cifar_args('--amp', out='straight'))
    interrupted_in_epoch_2(baseline, cifar_args('--amp', out='killed'))
    resumed = common.main(baseline, cifar_args('--amp', '--resume', out='killed'))
    assert [r['epoch'] for r in log_rows(tmp_path / 'killed')] == [1, 2, 3]
    # cuDNN's autotuned kernels are not bit-reproducible: the same run, within noise
    assert abs(resumed['final_test_acc'] - straight['final_test_acc']) < 8


def test_a_gpu_trained_model_is_evaluated_on_a_cpu_only_machine(cifar_args, tmp_path):
    common.main(baseline, cifar_args('--amp'))
    row = log_rows(tmp_path / 'run')[-1]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')  # no GPU visible, as on a laptop
    proc = subprocess.run([sys.executable, 'evaluate.py', str(tmp_path / 'run' / 'model.pt'), '--data',
                           cifar_args()[1], '--device', 'cpu', '--cache-dir', str(tmp_path / 'cache')],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.strip().splitlines()[-1].split()[-1].rstrip('%'))
    assert accuracy == pytest.approx(row['test_acc'], abs=1.0)  # the GPU evaluated under autocast


def test_two_runs_at_once_on_one_gpu(cifar_copy, tmp_path):
    env = dict(os.environ, DATA=str(cifar_copy), OUT=str(tmp_path / 'runs'), ROWS='baseline mixup', JOBS='2',
               PYTHON=sys.executable, EXTRA=f"--cache-dir {tmp_path / 'cache'} --epochs 1 --batch-size 50 --amp")
    proc = subprocess.run(['bash', 'run_all.sh', 'smoke'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '(GPU 0, job 2 of 2)' in proc.stdout
    for row in ('baseline', 'mixup'):
        result = json.loads((tmp_path / 'runs' / row / 's0' / 'result.json').read_text())
        assert result['device'].startswith('cuda') and result['script'] == row


# ---------------------------------------------------------------- the step as one CUDA graph

@pytest.fixture(scope='module')
def teacher_pt(cifar_copy, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('teacher')
    common.main(baseline, run_argv(cifar_copy, tmp, epochs=1, batch_size=50, device='cuda')())
    return tmp / 'run' / 'model.pt'


def thirty_steps(script, argv):
    """A fresh run of 30 steps with cuDNN's deterministic kernels: its weights and extra state."""
    run = common.prepare(script, argv)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        common.train_epoch(run, 0)  # 1,000 images in batches of 50: 20 steps
        common.train_epoch(run, 1, max_steps=10)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    assert run.step == 30
    return run, {k: v.float().clone() for k, v in {**run.net.state_dict(), **run.extra.state_dict()}.items()}


CASES = {'baseline': (baseline, ()), 'bf16': (baseline, ('--amp', 'bf16')), 'mixup': (mixup, ()), 'ema': (ema, ()),
         'adamw': (adamw, ()), 'ghmc': (ghmc, ()), 'distill': (distill, ()),
         'warmup+cosine': (cosine, ('--with', 'warmup', '--warmup-epochs', '0.5'))}


@pytest.mark.parametrize('case', CASES)
def test_the_graphed_step_trains_as_the_eager_one(case, cifar_args, teacher_pt):
    script, flags = CASES[case]
    flags = (*flags, '--teacher', str(teacher_pt)) if script is distill else flags
    graphed, a = thirty_steps(script, cifar_args(*flags, '--cuda-graph'))
    assert graphed.graph.graph is not None and graphed.step_kind == 'one CUDA graph'
    eager, b = thirty_steps(script, cifar_args(*flags, '--no-cuda-graph'))  # the same fused optimizer
    assert eager.graph.graph is None and eager.step_kind == 'eager (--no-cuda-graph)'
    tolerance = 1e-3 if case == 'bf16' else 1e-5
    for key in a:
        assert (a[key] - b[key]).norm() <= tolerance * max(a[key].norm(), 1e-12), key
    if case == 'ghmc':  # its running counts, updated inside the graph at every replay
        assert graphed.extra['ghm_density'].counts.sum() > 0


def test_a_graph_captured_at_one_lr_replays_at_another(cifar_args):
    run = common.prepare(baseline, cifar_args())
    images, targets = next(common.train_batches(run, 0))
    for _ in range(cuda_graph.WARMUP_STEPS + 1):
        run.graph(images, targets, 0.1)
    assert run.graph.graph is not None  # captured at lr 0.1
    before = [p.clone() for p in run.net.parameters()]
    for _ in range(3):
        run.graph(images, targets, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, run.net.parameters()))
    run.graph(images, targets, 0.1)
    assert not all(torch.equal(a, b) for a, b in zip(before, run.net.parameters()))


@pytest.mark.parametrize('script', [baseline, adamw])
@pytest.mark.parametrize('first, then', [('--no-cuda-graph', '--cuda-graph'), ('--cuda-graph', '--no-cuda-graph')])
def test_resume_across_the_graphed_and_the_eager_step(script, first, then, cifar_args, tmp_path):
    straight = common.main(script, cifar_args(first, out='straight'))
    interrupted_in_epoch_2(script, cifar_args(first, out='killed'))
    resumed = common.main(script, cifar_args(then, '--resume', out='killed'))
    assert [r['epoch'] for r in log_rows(tmp_path / 'killed')] == [1, 2, 3]
    assert abs(resumed['final_test_acc'] - straight['final_test_acc']) < 8  # cuDNN autotunes: within noise


@pytest.mark.parametrize('script, flags', [(baseline, ()), (mixup, ()), (cutmix, ('--cutmix-prob', '1')),
                                           (randaugment, ()), (ema, ())])
def test_no_host_sync_in_the_step_loop(script, flags, cifar_args):
    """Not seen here: a copy from pageable host memory with non_blocking=True (so copies come from pinned memory)."""
    run = common.prepare(script, cifar_args(*flags))
    common.train_epoch(run, 0, max_steps=cuda_graph.WARMUP_STEPS + 2)  # warm-up and capture
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        _, steps = common.train_epoch(run, 1, max_steps=8)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert steps == 8 and run.graph.graph is not None
