"""Devices and precision: --device, torchrun's processes, --amp, and the names that logs show."""
import os
import platform
from pathlib import Path

import torch
import torch.distributed as dist

from support.flags import fail, plural


def parse_device(name):
    """--device as a torch.device (auto: cuda, then mps, else cpu); one clear line when it is not here."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError:
        fail(f"--device {name}: not a device; use auto, cpu, cuda, cuda:N or mps")
    if device.type == 'cuda' and not torch.cuda.is_available():
        fail(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        fail(f"--device {name}: this machine has {plural(torch.cuda.device_count(), 'GPU')}, "
             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == 'mps' and not torch.backends.mps.is_available():
        fail(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    if device.type not in ('cpu', 'cuda', 'mps'):
        fail(f"--device {name}: this project runs on cpu, cuda or mps")
    return device


def start_processes(args):
    """(rank, world size, device): under torchrun one process per GPU (NCCL), or gloo on the CPU."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    rank, local_rank = int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0))
    device = parse_device(args.device)
    if device.type == 'cuda':  # with its index: set_device refuses a bare 'cuda'
        device = torch.device('cuda', local_rank if world > 1 else device.index or 0)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    if args.batch_size % world:
        fail(f"--batch-size {args.batch_size} does not split over {world} processes: use a multiple of {world}")
    if args.threads:
        torch.set_num_threads(args.threads)
    return rank, world, device


def check_shares(args, world, train_images):
    """Stop where the global batch, split over the processes, leaves one of them without images: a train set
    smaller than the batch is one batch of them all, cut into the processes' shares in rank order, so the last
    shares were empty (and their loss, a mean over no images, nan: 'training diverged ... lower --lr')."""
    share = args.batch_size // world
    if world == 1 or train_images > (world - 1) * share:
        return
    first = -(-train_images // share)  # the first rank whose share starts past the last image
    empty = f"process {first}" if first == world - 1 else f"processes {first} to {world - 1}"
    fits = train_images // world * world  # the largest batch that splits evenly and fills every share
    fix = f"give --batch-size {fits} or less" if fits else f"run at most {train_images} processes"
    fail(f"--batch-size {args.batch_size} over {world} processes: the train set has "
         f"{plural(train_images, 'image')}, fewer than the batch, so {empty} would get none of them: {fix}")


def amp_dtype(args, device, log):
    """The autocast dtype of --amp, or None (fp32).

    auto picks bf16 where the device computes it natively: it needs no loss scaling, and so no host
    sync per step (GradScaler reads its inf check every step); fp16 + grad scaler on older GPUs."""
    if not args.amp:
        return None
    if device.type == 'cuda':
        if args.amp == 'bf16' and not torch.cuda.is_bf16_supported():
            fail(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bf16; use --amp fp16")
        auto = torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
        return {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(args.amp, auto)
    if args.amp == 'fp16':
        fail(f"--amp fp16: half precision is for CUDA GPUs; on {device.type} use --amp (bf16 where the CPU has it)")
    native = cpu_has_bf16()
    if device.type == 'cpu' and (native or args.amp == 'bf16'):
        if not native:
            log("--amp bf16: this CPU has no bf16 units (AVX512-BF16 or AMX): bf16 runs emulated, about 14 times slower "
                "than fp32 (ResNet-20 on a 2-core AVX2 EPYC); --amp alone trains in fp32 here")
        return torch.bfloat16
    log(f"--amp: no fast half precision on this {device.type} (bf16 needs AVX512-BF16 or AMX); training in fp32")
    return None


def cpu_has_bf16():
    try:
        flags = Path('/proc/cpuinfo').read_text()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def cpu_model():
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
        return next(line.split(':', 1)[1].strip() for line in lines if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_name(device, world=1):
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_model()}, {torch.get_num_threads()} threads"
    return f"{device.type}: {name}" + (f" x {world} processes" if world > 1 else '')


def agree_across_processes(run, stats):
    """Under DDP: the mean loss and train_ce and the first bad step of all processes, and rank 0's BN statistics
    (each process's last forwards updated its own), so that every process evaluates and saves one net."""
    dist.all_reduce(stats[-1:], op=dist.ReduceOp.MIN)  # the first bad step of any, inf where none was
    dist.all_reduce(stats[:-1])  # the mean loss and train_ce
    stats[:-1] /= run.world
    for buffer in run.net.buffers():
        dist.broadcast(buffer, 0)
