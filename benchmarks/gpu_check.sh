#!/usr/bin/env bash
# The GPU check (issue 14): run on a CUDA machine with CuPy, torch and NumPy installed
# and no network. Writes everything under "$OUT" (default ./gpu_check_out); each step
# has its own timeout, so one hang cannot eat the ~10 minutes. Without a GPU or CuPy it
# stops at once, saying which.
#   OUT=/tmp/x bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
step() {  # step NAME SECONDS CMD...: output in $OUT/NAME.txt, status in summary.txt
    local name=$1 secs=$2
    shift 2
    log "$name: $*"
    timeout --kill-after=10 "$secs" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    log "$name: exit $rc$([ $rc = 124 ] && echo ' (timed out)')"
    tail -n 40 "$OUT/$name.txt"
    return $rc
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >"$OUT/nvidia-smi.txt" 2>&1; then
    log "no NVIDIA GPU here (nvidia-smi missing or failing): this check needs a CUDA machine"
    exit 2
fi
cat "$OUT/nvidia-smi.txt" | tee -a "$OUT/summary.txt"
if ! "$PY" -c "import cupy; cupy.cuda.runtime.getDeviceCount()" >"$OUT/cupy.txt" 2>&1; then
    log "CuPy does not import or sees no device (pip install 'nprnn[cupy]'):"
    cat "$OUT/cupy.txt"
    exit 2
fi
step versions 60 "$PY" -c "
import sys, numpy, cupy, nprnn
print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__,
      'nprnn', nprnn.__version__)
try:
    import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())
except ImportError:
    print('torch: not installed')
"
step tests_gpu 200 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_device.py
step bench_cuda 150 "$PY" -m nprnn bench --device cuda --repeat 3
# ~1 MB of text from the tree itself (the docs and sources, repeated): no download
"$PY" - "$OUT/corpus.txt" <<'PYEOF'
import pathlib, sys
parts = [p.read_text(encoding="utf-8", errors="replace")
         for p in sorted(pathlib.Path(".").glob("docs/**/*.md")) + sorted(pathlib.Path("src").rglob("*.py"))]
text = "\n".join(parts)
while len(text) < 1_000_000:
    text += "\n" + text
pathlib.Path(sys.argv[1]).write_text(text[:1_000_000], encoding="utf-8")
PYEOF
rm -rf "$OUT/run"
step train_cuda 100 "$PY" -m nprnn train --data "$OUT/corpus.txt" --mode stream --hidden 512 \
    --batch-size 64 --steps 200 --eval-every 100 --device cuda --out "$OUT/run" --quiet
step cpu_1024 60 "$PY" -c "
import time, numpy as np
from nprnn import functional as Fn
from nprnn.app.bench import cell_for, _weights
cell, H, B, T = cell_for('lstm'), 1024, 256, 100
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, H)).astype(np.float32)
d = rng.standard_normal((T, B, H)).astype(np.float32)
w = _weights(cell, H, H, np.float32, rng)
def step():
    _, _, c = Fn.sequence_forward(cell, x, None, w)
    Fn.sequence_backward(d, None, c)
step(); t = time.perf_counter(); step(); s = time.perf_counter() - t
print(f'nprnn CPU (numpy) LSTM H=1024 B=256 T=100 train step: {s*1e3:.0f} ms, '
      f'{6*4*H*2*H*B*T/s/1e9:.0f} GFLOP/s (compare bench_cuda.txt: target >= 20x)')
"
log "done; everything is in $OUT"
