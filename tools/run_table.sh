# The runner of run_all.sh, which sources it after setting PRESET, FLAGS, ROWS, SEEDS, TEACHER, NOTES
# and row_command (what each row runs): each row over SEEDS seeds into $OUT/<row>/s<seed>, then the
# table. Not a script of its own.
#
# Settings (environment): DATA (data dir; CIFAR-10 is downloaded there, default data), SEEDS, ROWS (a
# subset of row names), OUT (default runs/<preset>), PYTHON (default python), WEIGHTS, EXTRA (more
# flags for every run, e.g. "--device cpu"; not --seed, --out or --data, which are set here), JOBS
# (runs at a time per GPU: default 4 on a GPU, 1 on a CPU), BUDGET (seconds: start a run only where
# it can end before then, by the mean wall time of the rows finished so far, or by RUN_SECONDS,
# TEACHER_SECONDS before any has: a guess from measured speed; a run still going at the end of the
# budget is stopped, to resume), PUBLISHED (default docs/<preset>: the raw results a table starts
# from).
#
# Idempotent and resumable: a finished run (result.json) is skipped, an unfinished one (last.pt)
# resumes, so a stopped run_all.sh loses at most the epoch in flight of each run. JOBS runs go at
# once on each GPU (a CIFAR ResNet-20 step is many small kernels: where Python and the launches set
# its pace, one run leaves the GPU idle between them; tools/jobs.py measures it), each with --threads
# set so that together they use the CPU cores once. The distillation teacher runs beside the rows and
# only the distill rows wait for it. Each run appends to its own DIR.log; this output says which run
# went where.

# The settings, each checked before any run starts: one line naming the setting and what it takes.
setting() {  # setting NAME PATTERN WHAT
  [[ ${!1} =~ ^($2)$ ]] || { echo "run_all.sh: $1=${!1}: give $3" >&2; exit 2; }
}
setting SEEDS '[1-9][0-9]*' 'the number of seeds, a whole number >= 1'
setting BUDGET '[0-9]+' 'seconds, a whole number (0: no limit)'
setting JOBS '|[1-9][0-9]*' 'runs at a time, a whole number >= 1'
[[ ! -e $OUT || -d $OUT ]] || { echo "run_all.sh: OUT=$OUT is a file: give a folder for the table" >&2; exit 2; }


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
  [[ -n ${!v+x} && $(env | grep -c "^$v=") -gt 0 ]] && COMMAND="$v=\"$(tr -s ' \n' '  ' <<< "${!v}" | sed 's/ $//')\" $COMMAND"
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
# A run's command: the row's script, the preset's FLAGS, then the row's own flags, which win where
# they set the same flag (largebatch's --batch-size 1024 over the preset's 128).
each_run() {  # each_run FUNCTION: FUNCTION NAME DIR SCRIPT FLAGS... for each run
  local r s row distill=''; [[ " $ROWS " == *" distill "* ]] && distill=1
  # shellcheck disable=SC2086
  [[ -z $distill ]] || "$1" teacher "$OUT/teacher/s0" baseline.py $FLAGS $TEACHER --seed 0
  for r in $ROWS; do
    [[ $r == distill ]] && continue
    read -ra row <<< "$(row_command "$r")"
    for ((s = 0; s < SEEDS; s++)); do
      # shellcheck disable=SC2086
      "$1" "$r s$s" "$OUT/$r/s$s" "${row[0]}" $FLAGS "${row[@]:1}" --seed $s
    done
  done
  read -ra row <<< "$(row_command distill)"
  for ((s = 0; s < SEEDS && distill; s++)); do
    # shellcheck disable=SC2086
    "$1" "distill s$s" "$OUT/distill/s$s" "${row[0]}" $FLAGS "${row[@]:1}" --seed $s
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
