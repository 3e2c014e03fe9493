#!/usr/bin/env bash
# GPU check: on a CUDA machine, run the tests that exercise the CUDA paths and the speed
# benchmarks, and print one summary table (card, each figure, the CPU baseline from this run).
#
#   bash benchmarks/gpu_check.sh            # uses .venv/bin/python (install a CUDA torch there first)
#   PY=python3 bash benchmarks/gpu_check.sh # any interpreter with LesionAI's dependencies and CUDA torch
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-$(mktemp -d)}

"$PY" - <<'PYCODE'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA GPU; install a CUDA build (see README)")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PYCODE

echo "== CUDA tests"
"$PY" -m pytest Testing/test_cuda.py Testing/test_preprocessing.py -q -k "cuda" 2>&1 | tail -3 | tee "$OUT/tests.txt"
echo "== preprocessing benchmark"
"$PY" benchmarks/preprocessing.py --repeats 30 | tee "$OUT/preprocessing.txt"
echo "== analysis benchmark"
"$PY" benchmarks/analysis.py --repeats 20 | tee "$OUT/analysis.txt"

"$PY" - "$OUT" <<'PYCODE'
import re, sys, torch
from pathlib import Path
out = Path(sys.argv[1])
card = torch.cuda.get_device_name(0)
rows = []
for line in (out / "preprocessing.txt").read_text().splitlines():
    cells = [c.strip() for c in line.strip("|").split("|")]
    if len(cells) == 4 and cells[1] in ("cpu", "cuda"):
        rows.append((f"preprocess ProstateX-0000: {cells[0]}", cells[1], cells[2] + " ms"))
for line in (out / "analysis.txt").read_text().splitlines():
    cells = [c.strip() for c in line.strip("|").split("|")]
    if len(cells) == 8 and cells[1] in ("cpu", "cuda"):
        rows.append((f"analyze {cells[0]} (total; preprocess {cells[2]} ms, networks {cells[3]} ms)", cells[1], cells[7] + " ms"))
tests = (out / "tests.txt").read_text().strip().splitlines()[-1]
print(f"\n## GPU check on {card}\n")
print("| figure | device | value |\n|---|---|---|")
for name, device, value in rows:
    print(f"| {name} | {device} | {value} |")
print(f"| CUDA tests | cuda | {tests} |")
PYCODE
