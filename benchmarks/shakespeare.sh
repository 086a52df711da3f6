#!/usr/bin/env bash
# Tiny-shakespeare, stream mode: a 2x256 LSTM with dropout 0.25, truncated BPTT over
# 32 streams of 100 characters, one BLAS thread. Trains with the nprnn CLI and, while
# it runs, stamps each line of the run's log.jsonl with the wall time since the start
# (log.jsonl has steps, not times), so that the validation loss can be read against
# training time.
#
#   benchmarks/shakespeare.sh [DATA] [OUT] [STEPS]
#
# DATA defaults to ../shared/data/tinyshakespeare.txt (a benchmark input: never copy it
# into the repository), OUT to /tmp/nprnn-shakespeare, STEPS to 2000 (about 10-15 min
# on one core of the benchmark machine). Writes OUT/ (the run), OUT.stdout (the CLI's
# output) and OUT.curve.tsv: elapsed_s, step, val_loss, train_loss, chars_per_s.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${1:-../shared/data/tinyshakespeare.txt}
OUT=${2:-/tmp/nprnn-shakespeare}
STEPS=${3:-2000}
PY=${PYTHON:-python}

if [ -e "$OUT" ]; then
    echo "shakespeare.sh: $OUT exists - remove it or pass another OUT" >&2
    exit 2
fi
rm -f "$OUT.curve.tsv"
t0=$(date +%s.%N)
"$PY" -m nprnn train --data "$DATA" --mode stream --model lstm --hidden 256 --layers 2 \
    --dropout 0.25 --seq-len 100 --batch-size 32 --steps "$STEPS" --lr 3e-3 --clip 5 \
    --warmup 50 --decay cosine --eval-every 200 --patience 0 --seed 0 \
    --out "$OUT" --quiet --threads 1 >"$OUT.stdout" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' INT TERM

stamp() {  # new log lines -> OUT.curve.tsv, stamped with the seconds since the start
    local have now
    have=$( [ -f "$OUT.curve.tsv" ] && wc -l <"$OUT.curve.tsv" || echo 0 )
    [ -f "$OUT/log.jsonl" ] || return 0
    now=$(date +%s.%N)
    tail -n +"$((have + 1))" "$OUT/log.jsonl" | "$PY" -c '
import json, sys
t = float(sys.argv[1])
for line in sys.stdin:
    if line.strip():
        e = json.loads(line)
        print("%.1f\t%d\t%.4f\t%.4f\t%s" % (
            t, e["step"], e["val_loss"], e["train_loss"], e["chars_per_s"]))
' "$(echo "$now - $t0" | bc)" >>"$OUT.curve.tsv"
}

while kill -0 "$pid" 2>/dev/null; do
    stamp
    sleep 2
done
wait "$pid" && rc=0 || rc=$?
stamp
echo "exit $rc after $(echo "$(date +%s.%N) - $t0" | bc) s" >>"$OUT.stdout"
cat "$OUT.curve.tsv"
exit "$rc"
