#!/usr/bin/env bash
# The whole ablation table as a controlled experiment: every row trains the same arch on the
# same data for the same epochs with the same batch size and weight decay; only the trick
# changes. Each row runs over SEEDS seeds into runs/<preset>/<row>/s<seed>, then tools/summarize.py
# writes runs/<preset>/ablation-<preset>.md (mean +- std over seeds, the delta to the baseline,
# the paper's reported change) and a plot.
#
#   bash run_all.sh [PRESET]      PRESET: smoke (default), cpu, recipe, paper, resnet18, intel
#
# Below: the presets (the flags every row of a table shares, its rows, its seeds), then what each
# row runs. tools/run_table.sh runs them: the seeds, the slots, the time budget, which runs are
# done already; its header lists the settings (DATA, SEEDS, ROWS, OUT, JOBS, BUDGET, EXTRA, ...).

# bash 4.4 or later: older ones (macOS ships 3.2) stop at the first empty array under set -u.
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "run_all.sh: needs bash >= 4.4, this is $BASH_VERSION: install a newer bash (macOS: brew install bash) and run it with that" >&2
  exit 2
fi

# One group, which bash reads whole before it runs it, and a runner that `source` reads whole: an edit
# of either during a run of hours cannot change what the run does.
{
set -uo pipefail
set -m  # each run in its own process group: a Ctrl-C reaches this script, which stops every run once
cd "$(dirname "$0")"

PRESET=${1:-${PRESET:-smoke}}
PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/$PRESET}
DATA=${DATA:-data}
EXTRA=${EXTRA:-}
BUDGET=${BUDGET:-0}
JOBS=${JOBS:-}
CHECK=${CHECK:-}
PUBLISHED=${PUBLISHED:-docs/$PRESET}

CIFAR_ROWS="baseline warmup zerogamma nobiasdecay resnet_d cosine labelsmooth mixup distill cosine+ls cosine+mixup
            cosine+mixup+ls all cutmix randaugment ema adamw"
PAPER_ROWS="baseline warmup zerogamma nobiasdecay resnet_d cosine labelsmooth mixup distill"
INTEL_ROWS="scratch pretrained +adam +warmup +cosine +ls +mixup fixres"
RESNET18_ROWS="baseline cosine warmup5 labelsmooth mixup0.3 all4"
NOTES=()

case $PRESET in
  smoke)  # every row, one tiny epoch on 128 images: seconds per row on a CPU (CI runs it)
    SEEDS=${SEEDS:-1}; ROWS=${ROWS:-$CIFAR_ROWS}
    FLAGS="--arch resnet20 --epochs 1 --subset 128 --test-subset 128 --batch-size 32"
    TEACHER="--arch resnet20" ;;
  cpu)  # the short budget: the paper's nine rows on a 2-core CPU and its large-batch pair (batch 1024, linear lr
        # scaling, without and with warmup): ResNet-20 on full CIFAR-10, 6 epochs, fp32 (no --amp: it means bf16 on
        # some CPUs, fp32 on others), 4 seeds, a teacher trained 46 epochs: 11 x 4 x 6 + 46 = 310 epochs of 50,000
        # images, 15.5M training images (the pilot that chose 4 seeds: docs/ablation-cpu.md's notes)
    SEEDS=${SEEDS:-4}; ROWS=${ROWS:-$PAPER_ROWS largebatch largebatch+warmup}
    FLAGS="--arch resnet20 --epochs 6 --batch-size 128"
    TEACHER="--epochs 46"
    NOTES+=("the distillation teacher is the baseline trained 46 epochs instead of 6, so that it knows more than its
      students") ;;
  recipe)  # the recipe's own length, on any device: ResNet-20 on full CIFAR-10, 30 epochs, batch 128, bf16
           # (native on GPUs from Ampere on and CPUs with AVX512-BF16 or AMX; emulated elsewhere, ~14x slower: train
           # it where it is native), 4 seeds: the paper's nine rows, the large-batch pair and all of them stacked,
           # a ResNet-56 teacher trained by the same recipe. ROWS= adds the others (cosine+ls, cosine+mixup,
           # cosine+mixup+ls, cutmix, randaugment, ema, adamw). On a CPU 2 runs of 1 thread at a time: 1.19-1.23x
           # the images per second of 1 run of 2 threads (docs/speed.md)
    SEEDS=${SEEDS:-4}; ROWS=${ROWS:-$PAPER_ROWS largebatch largebatch+warmup all}; CPU_JOBS=2
    FLAGS="--arch resnet20 --epochs 30 --batch-size 128 --amp bf16"
    TEACHER="--arch resnet56"
    NOTES+=("the distillation teacher is a ResNet-56 trained by the same recipe (30 epochs), a bigger net than its
      students, as in the paper") ;;
  paper)  # ResNet-56, 200 epochs, the gluon-cv CIFAR recipe (lr 0.1, batch 128, weight decay 1e-4, x0.1 at
          # epochs 100 and 150): 17 rows x 3 seeds x 200 epochs + a ResNet-110 teacher, ~10,600 ResNet-56 epochs;
          # GPU-hours ~ 10,600 x 50,000 / (img/s of `python tools/bench.py --arch resnet56 --amp`) / 3600
    SEEDS=${SEEDS:-3}; ROWS=${ROWS:-$CIFAR_ROWS}
    FLAGS="--arch resnet56 --epochs 200 --batch-size 128 --lr 0.1 --weight-decay 1e-4 --milestones 0.5 0.75 --amp"
    TEACHER="--arch resnet110"
    NOTES+=("every row trains 200 epochs, mixup too (gluon-cv trains its mixup models 350): a controlled comparison") ;;
  resnet18)  # siahuat0727/bag-of-tricks' CIFAR-10 table: kuangliu's CIFAR ResNet-18, 90 epochs, x0.1 at
             # epochs 30 and 60, weight decay 1e-5; 18 runs x 90 epochs: GPU-hours ~ 81,000,000 / (img/s of
             # `python tools/bench.py --arch resnet18 --amp`) / 3600 / JOBS' gain. They report the best
             # epoch's accuracy; this table, the last epoch's
    SEEDS=${SEEDS:-3}; ROWS=${ROWS:-$RESNET18_ROWS}
    FLAGS="--arch resnet18 --epochs 90 --batch-size 128 --lr 0.1 --weight-decay 1e-5 --milestones 0.33334 0.66667 --amp"
    NOTES+=("siahuat0727/bag-of-tricks reports 93.10 (baseline), 92.94 (cosine), 93.18 (warmup), 93.38 (label
      smoothing), 93.77 (mixup), 94.63 (all four): one run each, the best epoch's accuracy") ;;
  intel)  # Kaggle Intel Image Classification (DATA=its folder, a GPU): ResNet-50, batch 64, 120 epochs, the
          # public reproduction's cumulative rows: scratch, pretrained (ImageNet weights by name, or
          # WEIGHTS=PATH offline), + Adam, + warmup, + cosine, + label smoothing, + mixup, and FixRes
    SEEDS=${SEEDS:-3}; ROWS=${ROWS:-$INTEL_ROWS}
    FLAGS="--arch resnet50 --epochs 120 --batch-size 64 --amp"
    NOTES+=("zerogamma and resnet_d are left out: zero gamma would wipe the pretrained BN weights, and
      torchvision has no weights for the ResNet-C/D stem and shortcuts")
    [[ -d $DATA ]] || { echo "run_all.sh intel: DATA=$DATA is not a folder: point DATA at Kaggle's intel-image-classification" >&2; exit 2; } ;;
  *) echo "run_all.sh: unknown preset '$PRESET' (smoke, cpu, recipe, paper, resnet18, intel)" >&2; exit 2 ;;
esac
WEIGHTS_FLAG=${WEIGHTS:+--weights $WEIGHTS}

# row name -> script and its flags
row_command() {
  case $1 in
    baseline)        echo "baseline.py" ;;
    warmup)          echo "warmup.py" ;;
    zerogamma)       echo "zerogamma.py" ;;
    nobiasdecay)     echo "nobiasdecay.py" ;;
    resnet_d)        echo "resnet_d.py --variant D" ;;
    cosine)          echo "cosine.py" ;;
    labelsmooth)     echo "labelsmooth.py" ;;
    mixup)           echo "mixup.py" ;;
    distill)         echo "distill.py --teacher @OUT/teacher/s0/model.pt" ;;  # @OUT: the table's folder
    cosine+ls)       echo "cosine.py --with labelsmooth" ;;
    cosine+mixup)    echo "mixup.py --with cosine" ;;
    cosine+mixup+ls) echo "mixup.py --with cosine labelsmooth" ;;
    all)             echo "warmup.py --with zerogamma nobiasdecay resnet_d cosine labelsmooth mixup" ;;
    warmup5)         echo "warmup.py --warmup-epochs 5" ;;
    mixup0.3)        echo "mixup.py --alpha 0.3" ;;
    largebatch)      echo "largebatch.py --batch-size 1024 --warmup-epochs 0" ;;  # linear lr scaling alone
    largebatch+warmup) echo "largebatch.py --batch-size 1024" ;;  # and the warmup (10% of the run here)
    all4)            echo "warmup.py --warmup-epochs 5 --with cosine labelsmooth mixup --alpha 0.3" ;;
    cutmix)          echo "cutmix.py" ;;
    randaugment)     echo "randaugment.py" ;;
    ema)             echo "ema.py" ;;
    adamw)           echo "adamw.py" ;;
    scratch)         echo "baseline.py" ;;
    pretrained)      echo "pretrained.py $WEIGHTS_FLAG" ;;
    +adam)           echo "pretrained.py $WEIGHTS_FLAG --with adamw --adam --lr 1e-4 --weight-decay 1e-4" ;;
    +warmup)         echo "pretrained.py $WEIGHTS_FLAG --with adamw warmup --adam --lr 1e-4 --weight-decay 1e-4" ;;
    +cosine)         echo "pretrained.py $WEIGHTS_FLAG --with adamw warmup cosine --adam --lr 1e-4 --weight-decay 1e-4" ;;
    +ls)             echo "pretrained.py $WEIGHTS_FLAG --with adamw warmup cosine labelsmooth --adam --lr 1e-4 --weight-decay 1e-4" ;;
    +mixup)          echo "pretrained.py $WEIGHTS_FLAG --with adamw warmup cosine labelsmooth mixup --adam --lr 1e-4 --weight-decay 1e-4" ;;
    fixres)          echo "pretrained.py $WEIGHTS_FLAG --with fixres" ;;
    *) echo "run_all.sh: unknown row '$1' (rows: $(echo $CIFAR_ROWS $RESNET18_ROWS $INTEL_ROWS))" >&2; return 1 ;;
  esac
}

source tools/run_table.sh
}  # nothing after this line runs: keep every command inside the braces
