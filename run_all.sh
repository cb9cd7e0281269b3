#!/usr/bin/env bash
# The whole ablation table as a controlled experiment: every row trains the same arch on the
# same data for the same epochs with the same batch size and weight decay; only the trick
# changes. Each row runs over SEEDS seeds into runs/<preset>/<row>/s<seed>, then tools/summarize.py
# writes runs/<preset>/ablation-<preset>.md (mean +- std over seeds, delta to baseline, the
# paper's reported change) and a plot.
#
#   bash run_all.sh [PRESET]          PRESET: smoke (default), cpu, gpu-short, paper, resnet18, intel
#
# Presets:
#   smoke      every row, one tiny epoch on 128 images: seconds per row on a CPU (CI runs it)
#   cpu        the paper's nine rows overnight on a 2-core CPU: baseline, warmup, zero gamma, no bias
#              decay, ResNet-D, cosine, label smoothing, mixup, distillation; ResNet-20 on full
#              CIFAR-10, 6 epochs, fp32 (no --amp: it means bf16 on some CPUs, fp32 on others), 4
#              seeds, a ResNet-20 teacher of 46 epochs: 9 x 4 x 6 + 46 = 262 epochs of 50,000 images
#              (13.1M training images; about 7 hours at 500 img/s). See the pilot below the presets
#   gpu-short  every row on full CIFAR-10, 3 seeds, ResNet-20, 30 epochs, --amp, JOBS runs at a
#              time (tools/gpu.sh measures it and fills the table over short GPU slots, BUDGET
#              seconds each: the same command carries on where the last one stopped)
#   paper      ResNet-56 on full CIFAR-10, 200 epochs, 3 seeds, the gluon-cv CIFAR recipe
#              (lr 0.1, batch 128, weight decay 1e-4, x0.1 at epochs 100 and 150): 17 rows x 3
#              seeds x 200 epochs = 10,200 ResNet-56 epochs, + 200 of a ResNet-110 teacher (about
#              400 more); GPU-hours ~ 10,600 x 50,000 / (the img/s that `python tools/bench.py --arch
#              resnet56 --amp` prints on your GPU) / 3600
#   resnet18   siahuat0727/bag-of-tricks' CIFAR-10 table: the CIFAR ResNet-18 (kuangliu's), 90
#              epochs, batch 128, lr 0.1, x0.1 at epochs 30 and 60, weight decay 1e-5; baseline,
#              cosine, warmup (5 epochs), label smoothing 0.1, mixup 0.3 and all four; 3 seeds:
#              18 runs x 90 epochs x 50,000 images; GPU-hours ~ 81,000,000 / (the img/s that
#              `python tools/bench.py --arch resnet18 --amp` prints on your GPU) / 3600 / JOBS' gain.
#              siahuat0727 reports the best epoch's accuracy; this table, the last epoch's
#   intel      Kaggle Intel Image Classification (DATA=path to it, GPU): ResNet-50, batch 64,
#              120 epochs, the public reproduction's cumulative rows from scratch, pretrained
#              (ImageNet weights by name, or WEIGHTS=path offline), + Adam, + warmup, + cosine,
#              + label smoothing, + mixup; and pretrained tested at 1.15x its size (FixRes)
#
# Environment: DATA (data dir; CIFAR-10 is downloaded there, default data), SEEDS, ROWS (a
# subset of row names), OUT (default runs/<preset>), PYTHON (default python), WEIGHTS, EXTRA
# (more flags for every run, e.g. "--device cpu"), JOBS (runs at a time per GPU: default 4 on a
# GPU, 1 on a CPU), BUDGET (seconds: start a run only where it can end before then, by the mean
# wall time of the rows finished so far, or by RUN_SECONDS, TEACHER_SECONDS before any has: a
# guess from measured speed; a run still going at the end of the budget is stopped, to resume),
# PUBLISHED (default docs/<preset>: the raw results a table starts from).
#
# Idempotent and resumable: a finished run (result.json) is skipped, an unfinished one
# (last.pt) resumes, so a killed run_all.sh loses at most the epoch in flight of each run.
# JOBS runs go at once on each GPU (a CIFAR ResNet-20 step is many small kernels: where Python
# and the launches set its pace, one run leaves the GPU idle between them; tools/jobs.py
# measures it), each with --threads set so that together they use the CPU cores once. The
# distillation teacher runs beside the rows and only the distill rows wait for it. Each run
# writes its own DIR.log; this script's output says which run went where.

# bash 4.4 or later: older ones (macOS ships 3.2) stop at the first empty array under set -u.
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "run_all.sh: needs bash >= 4.4, this is $BASH_VERSION: install a newer bash (macOS: brew install bash) and run it with that" >&2
  exit 2
fi

# One group, which bash reads whole before it runs it: an edit of this file during a run of hours
# cannot change what the run does.
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
PUBLISHED=${PUBLISHED:-docs/$PRESET}

CIFAR_ROWS="baseline warmup zerogamma nobiasdecay resnet_d cosine labelsmooth mixup distill cosine+ls cosine+mixup
            cosine+mixup+ls all cutmix randaugment ema adamw"
PAPER_ROWS="baseline warmup zerogamma nobiasdecay resnet_d cosine labelsmooth mixup distill"
INTEL_ROWS="scratch pretrained +adam +warmup +cosine +ls +mixup fixres"
RESNET18_ROWS="baseline cosine warmup5 labelsmooth mixup0.3 all4"
NOTES=()

case $PRESET in
  smoke)
    SEEDS=${SEEDS:-1}; ROWS=${ROWS:-$CIFAR_ROWS}
    FLAGS="--arch resnet20 --epochs 1 --subset 128 --test-subset 128 --batch-size 32"
    TEACHER="--arch resnet20" ;;
  cpu)
    SEEDS=${SEEDS:-4}; ROWS=${ROWS:-$PAPER_ROWS}
    FLAGS="--arch resnet20 --epochs 6 --batch-size 128"
    TEACHER="--epochs 46"
    NOTES+=("the distillation teacher is the baseline trained 46 epochs instead of 6, so that it knows more than its
      students") ;;
  gpu-short)
    SEEDS=${SEEDS:-3}; ROWS=${ROWS:-$CIFAR_ROWS}
    FLAGS="--arch resnet20 --epochs 30 --batch-size 128 --amp"
    TEACHER="--arch resnet56" ;;
  paper)
    SEEDS=${SEEDS:-3}; ROWS=${ROWS:-$CIFAR_ROWS}
    FLAGS="--arch resnet56 --epochs 200 --batch-size 128 --lr 0.1 --weight-decay 1e-4 --milestones 0.5 0.75 --amp"
    TEACHER="--arch resnet110"
    NOTES+=("every row trains 200 epochs, mixup too (gluon-cv trains its mixup models 350): a controlled comparison") ;;
  resnet18)
    SEEDS=${SEEDS:-3}; ROWS=${ROWS:-$RESNET18_ROWS}
    FLAGS="--arch resnet18 --epochs 90 --batch-size 128 --lr 0.1 --weight-decay 1e-5 --milestones 0.33334 0.66667 --amp"
    NOTES+=("siahuat0727/bag-of-tricks reports 93.10 (baseline), 92.94 (cosine), 93.18 (warmup), 93.38 (label
      smoothing), 93.77 (mixup), 94.63 (all four): one run each, the best epoch's accuracy") ;;
  intel)
    SEEDS=${SEEDS:-3}; ROWS=${ROWS:-$INTEL_ROWS}
    FLAGS="--arch resnet50 --epochs 120 --batch-size 64 --amp"
    NOTES+=("zerogamma and resnet_d are left out: zero gamma would wipe the pretrained BN weights, and
      torchvision has no weights for the ResNet-C/D stem and shortcuts")
    [[ -d $DATA ]] || { echo "run_all.sh intel: DATA=$DATA is not a folder: point DATA at Kaggle's intel-image-classification" >&2; exit 2; } ;;
  *) echo "run_all.sh: unknown preset '$PRESET' (smoke, cpu, gpu-short, paper, resnet18, intel)" >&2; exit 2 ;;
esac
WEIGHTS_FLAG=${WEIGHTS:+--weights $WEIGHTS}

# The settings, each checked before any run starts: one line naming the setting and what it takes.
setting() {  # setting NAME PATTERN WHAT
  [[ ${!1} =~ ^($2)$ ]] || { echo "run_all.sh: $1=${!1}: give $3" >&2; exit 2; }
}
setting SEEDS '[1-9][0-9]*' 'the number of seeds, a whole number >= 1'
setting BUDGET '[0-9]+' 'seconds, a whole number (0: no limit)'
setting JOBS '|[1-9][0-9]*' 'runs at a time, a whole number >= 1'
[[ ! -e $OUT || -d $OUT ]] || { echo "run_all.sh: OUT=$OUT is a file: give a folder for the table" >&2; exit 2; }

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
    distill)         echo "distill.py --teacher $OUT/teacher/s0/model.pt" ;;
    cosine+ls)       echo "cosine.py --with labelsmooth" ;;
    cosine+mixup)    echo "mixup.py --with cosine" ;;
    cosine+mixup+ls) echo "mixup.py --with cosine labelsmooth" ;;
    all)             echo "warmup.py --with zerogamma nobiasdecay resnet_d cosine labelsmooth mixup" ;;
    warmup5)         echo "warmup.py --warmup-epochs 5" ;;
    mixup0.3)        echo "mixup.py --alpha 0.3" ;;
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

NGPU=$($PYTHON -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [[ $EXTRA == *"--device cpu"* ]]; then NGPU=0; fi
if (( NGPU > 0 )); then JOBS=${JOBS:-4}; SLOTS=$((NGPU * JOBS)); else JOBS=${JOBS:-1}; SLOTS=$JOBS; fi
THREADS=$(( $(nproc 2>/dev/null || echo 1) / SLOTS )); (( THREADS > 0 )) || THREADS=1
THREADS_FLAG=(); (( SLOTS > 1 )) && THREADS_FLAG=(--threads "$THREADS")  # one run alone takes every core
START=$SECONDS
FAILED=()
PID=()   # slot -> the pid (and process group) of the run in it
NAME=()  # slot -> the name of that run
LOG=()   # slot -> its DIR.log
CAUSE=() # the last line of each failed run's log

stop() {
  trap '' INT TERM HUP
  echo "run_all.sh: interrupted; each run stops after saving its last.pt: run it again to carry on" >&2
  local pid
  for pid in "${PID[@]}"; do [[ -n $pid ]] && kill -INT -- "-$pid" 2>/dev/null; done
  wait
  exit 130
}
trap stop INT TERM HUP  # HUP: the terminal closed; its runs would train on, orphaned

time_left() { (( BUDGET > 0 )) && echo $(( BUDGET - (SECONDS - START) )) || echo 0; }

# The seconds a run should take: the teacher TEACHER_SECONDS, a row the mean of the finished rows' wall
# times (+10% and the start-up), or RUN_SECONDS before any has finished; 0 where nothing tells.
expected_seconds() {  # expected_seconds NAME
  [[ $1 == teacher ]] && { echo "${TEACHER_SECONDS:-0}"; return; }
  local f
  for f in "$OUT"/*/s*/result.json; do
    [[ -f $f && $f != "$OUT/teacher/"* ]] && sed -n 's/.*"wall_seconds": \([0-9.]*\).*/\1/p' "$f"
  done | awk -v guess="${RUN_SECONDS:-0}" '{sum += $1; n++} END {printf "%d\n", n ? 1.1 * sum / n + 15 : guess}'
}

# One run: skipped when finished, resumed when started; stopped (to resume later) at the budget.
run() {  # run NAME DIR SCRIPT FLAGS...
  local name=$1 dir=$2; shift 2
  # shellcheck disable=SC2086
  local command=($PYTHON "$@" --data "$DATA" --out "$dir" --resume "${THREADS_FLAG[@]}" $EXTRA)
  local what="$* $EXTRA"  # the run itself, wherever its data and its folder are (DIGEST says which data)
  # finished by this very run on this very data: done; otherwise the script decides (the same run, or an
  # error naming the flags or the data that differ)
  if [[ -n $DIGEST && -f $dir/result.json && -f $dir.command && $(<"$dir.command") == "$what" &&
        $(recorded_digest "$dir/result.json") == "$DIGEST" ]]; then
    echo "== $name: done ($dir)"; return 0
  fi
  local limit=() left need; left=$(time_left)
  if (( BUDGET > 0 )); then
    need=$(expected_seconds "$name")
    if (( left <= 30 || left < need )); then
      echo "== $name: not started: ${left}s of the budget left, and it takes about ${need}s"; touch "$OUT/paused"; return 0
    fi
    limit=(timeout --foreground --signal=INT "$left")
  fi
  mkdir -p "$(dirname "$dir")"
  echo "== $(date '+%Y-%m-%d %H:%M:%S') $what" >> "$dir.log"  # appended: each start of the run keeps its lines
  "${limit[@]}" "${command[@]}" >> "$dir.log" 2>&1
  local status=$?
  echo "== $name: $(tail -n 1 "$dir.log")"
  (( status == 0 )) && echo "$what" > "$dir.command"  # the command that finished it, once it has
  if (( status == 124 )) && (( BUDGET > 0 )); then
    echo "== $name: paused at the time budget"; touch "$OUT/paused"; return 0
  fi
  (( status == 0 )) && return 0
  # stopped by Ctrl-C: its last line (above) says so, and stop() below says what to do
  [[ $(tail -n 1 "$dir.log") == "error: interrupted"* ]] || echo "== $name FAILED (exit $status), see $dir.log" >&2
  return 1
}

last_words() {  # last_words DIR.log: what its run printed last (not the line run() starts it with)
  local line; line=$(grep -v '^== ' "$1" 2>/dev/null | tail -n 1); echo "${line:-(it printed nothing; see $1)}"
}

reap() {  # reap SLOT: collect the finished run in SLOT
  wait "${PID[$1]}" || { FAILED+=("${NAME[$1]}"); CAUSE+=("${NAME[$1]}: $(last_words "${LOG[$1]}")"); }
  PID[$1]=''
}

# Start a run in the first free slot (waiting for one); with GPUs, slot s runs on GPU s % NGPU.
launch() {  # launch NAME DIR SCRIPT FLAGS...
  local slot
  while :; do
    for ((slot = 0; slot < SLOTS; slot++)); do
      [[ -z ${PID[slot]:-} ]] && break 2
      kill -0 "${PID[slot]}" 2>/dev/null || { reap "$slot"; break 2; }
    done
    sleep 0.5
  done
  if (( NGPU > 0 )); then
    echo "== $1 -> $2 (GPU $((slot % NGPU)), job $((slot / NGPU + 1)) of $JOBS)"
    CUDA_VISIBLE_DEVICES=$((slot % NGPU)) run "$@" &
  else
    echo "== $1 -> $2$( (( SLOTS > 1 )) && echo " (job $((slot + 1)) of $JOBS)")"
    run "$@" &
  fi
  PID[slot]=$! NAME[slot]=$1 LOG[slot]=$2.log
}

wait_for() {  # wait_for NAME: until the run called NAME has ended (if it is running)
  local slot
  for ((slot = 0; slot < SLOTS; slot++)); do
    [[ -n ${PID[slot]:-} && ${NAME[slot]} == "$1" ]] && reap "$slot"
  done
}

wait_all() {
  local slot
  for ((slot = 0; slot < SLOTS; slot++)); do [[ -n ${PID[slot]:-} ]] && reap "$slot"; done
}

for r in $ROWS; do row_command "$r" > /dev/null || exit 2; done  # a misspelt row stops here, not hours later
REPEATED=$(tr -s ' \n' '\n\n' <<< "$ROWS" | sed '/^$/d' | sort | uniq -d | tr '\n' ' ')
[[ -z $REPEATED ]] || { echo "run_all.sh: ROWS names ${REPEATED% } twice: give each row once" >&2; exit 2; }
for flag in --seed --out --data; do  # run_all.sh sets them for each run
  [[ " $EXTRA " != *" $flag "* && " $EXTRA " != *" $flag="* ]] ||
    { echo "run_all.sh: EXTRA sets $flag, which run_all.sh sets for each run: use SEEDS, OUT or DATA instead" >&2; exit 2; }
done

# The digest of DATA's files, computed once: a finished run is skipped only where it was made on the same
# files (its result.json records their digest); none where it cannot be computed (the runs then say why).
recorded_digest() { sed -n 's/.*"digest": "\([0-9a-f]*\)".*/\1/p' "$1" 2>/dev/null | head -n 1; }
DATASET=$(sed -n 's/.* --dataset[= ]\([a-z0-9]*\).*/\1/p' <<< " $FLAGS $EXTRA ")
DIGEST=$($PYTHON -c 'import sys; from support import datasets; print(datasets.digest_of(*sys.argv[1:]))' "$DATA" "$DATASET" 2>/dev/null) || DIGEST=""

# Start from the preset's published raw results (docs/<preset>/, or PUBLISHED=DIR): each finished run there
# that was made on DATA's files is copied into OUT, where the same command then skips it; a run already in
# OUT is kept as it is. The teacher's model.pt comes with it while distill rows still need it.
carry_published() {
  local f dir rel
  [[ -d $PUBLISHED && -n $DIGEST ]] || return 0
  for f in "$PUBLISHED"/*/s*/result.json; do
    [[ -f $f && $(recorded_digest "$f") == "$DIGEST" ]] || continue
    dir=${f%/result.json} rel=${f#"$PUBLISHED"/}; rel=${rel%/result.json}
    [[ -e $OUT/$rel/result.json ]] && continue
    mkdir -p "$OUT/$rel" && cp -p "$dir"/* "$OUT/$rel/" && cp -p "$dir.command" "$OUT/$rel.command" 2>/dev/null
    echo "== ${rel%/s*} ${rel##*/}: carried from $PUBLISHED"
  done
}

COMMAND="bash run_all.sh $PRESET"
for v in DATA SEEDS ROWS OUT EXTRA WEIGHTS BUDGET JOBS; do  # the variables the caller set, for the record
  [[ -n ${!v+x} && $(env | grep -c "^$v=") -gt 0 ]] && COMMAND="$v=\"${!v}\" $COMMAND"
done
mkdir -p "$OUT"
rm -f "$OUT/paused"  # written by a run stopped (or not started) at the time budget
carry_published
{ echo "preset $PRESET"; echo "command $COMMAND"; echo "out $OUT"; echo "data $DATA"; echo "flags $FLAGS $EXTRA"
  echo "jobs $SLOTS at a time$( (( NGPU > 0 )) && echo " on $NGPU GPU(s)")"
  echo "seeds $SEEDS"
  for note in "${NOTES[@]}"; do echo "note $(printf '%s' "$note" | tr -s ' \n' '  ')"; done  # one line each
  for r in $ROWS; do echo "row $r $(row_command "$r")"; done; } > "$OUT/rows.txt"

# Every run of the table in the order they start: the distillation teacher first (a bigger net, the
# preset's recipe, so the longest run), then every row and seed beside it, the distillation rows last.
each_run() {  # each_run FUNCTION: FUNCTION NAME DIR SCRIPT FLAGS... for each run
  local r s distill=''; [[ " $ROWS " == *" distill "* ]] && distill=1
  # shellcheck disable=SC2086
  [[ -z $distill ]] || "$1" teacher "$OUT/teacher/s0" baseline.py $FLAGS $TEACHER --seed 0
  for r in $ROWS; do
    [[ $r == distill ]] && continue
    for ((s = 0; s < SEEDS; s++)); do
      # shellcheck disable=SC2086
      "$1" "$r s$s" "$OUT/$r/s$s" $(row_command "$r") $FLAGS --seed $s
    done
  done
  for ((s = 0; s < SEEDS && distill; s++)); do
    # shellcheck disable=SC2086
    "$1" "distill s$s" "$OUT/distill/s$s" $(row_command distill) $FLAGS --seed $s
  done
}

same_data() {  # same_data NAME DIR SCRIPT FLAGS...: a finished run made on other files stops the table, in its words
  local name=$1 dir=$2 made line; shift 2
  made=$(recorded_digest "$dir/result.json")
  [[ -z $made || -z $DIGEST || $made == "$DIGEST" ]] && return 0
  # shellcheck disable=SC2086
  line=$($PYTHON "$@" --data "$DATA" --out "$dir" --resume $EXTRA 2>&1 | tail -n 1) && return 0  # it judged it the same
  echo "run_all.sh $PRESET: $name: $line" >&2
  exit 1
}

start_run() {  # start_run NAME DIR SCRIPT FLAGS...: the distillation rows not yet done once their teacher is
  if [[ $1 == distill* && ! -f $2/result.json ]]; then
    wait_for teacher
    if [[ ! -f $OUT/teacher/s0/model.pt ]]; then
      echo "== $1: waiting for the teacher's model.pt ($OUT/teacher/s0), which is not there"; return 0
    fi
  fi
  launch "$@"
}

each_run same_data
each_run start_run
wait_all

if [[ -f $OUT/paused ]] && ! ls "$OUT"/*/s*/result.json 2>/dev/null | grep -qv /teacher/; then
  echo "run_all.sh $PRESET: no row has finished yet, so no table yet"
else
  $PYTHON tools/summarize.py "$OUT" || FAILED+=(summarize)
fi
if (( ${#FAILED[@]} )); then
  echo "run_all.sh $PRESET: failed: ${FAILED[*]}" >&2
  # the first failed run's cause as the last line (a missing DATA fails every run alike)
  (( ${#CAUSE[@]} )) && echo "run_all.sh $PRESET: ${CAUSE[0]}" >&2
  exit 1
fi
if [[ -f $OUT/paused ]]; then
  echo "run_all.sh $PRESET: time budget of ${BUDGET}s used; run it again to carry on"
  exit 0
fi
echo "run_all.sh $PRESET: done in $((SECONDS - START))s; table in $OUT/ablation-$PRESET.md"
exit 0
}  # nothing after this line runs: keep every command inside the braces
