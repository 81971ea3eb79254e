#!/usr/bin/env bash
# Install everything the recipe needs into a virtual environment (default: ./.venv).
#
#   bash install.sh                 # CPU machine or GPU machine, creates ./.venv
#   VENV=/path/to/env bash install.sh
#   TORCH_SPEC="torch==2.13.0" bash install.sh   # choose another torch build/version
#
# torch is installed first and pinned, so no later package can pull a different (CUDA, multi-GB) build.
# torchaudio: PyPI only has CUDA builds. On a CPU-only torch its compiled libraries cannot load, so we
# remove them and torchaudio runs in pure-Python mode (resample, MelSpectrogram: all the recipe uses).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCHAUDIO_SPEC=${TORCHAUDIO_SPEC:-torchaudio==2.11.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() {
  # pip warns about unreachable local indexes on some machines; keep the log readable.
  "$PY" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

echo "[install] $TORCH_SPEC"
pip_install "$TORCH_SPEC"

echo "[install] $TORCHAUDIO_SPEC (no dependencies: it must not replace torch)"
pip_install --no-deps "$TORCHAUDIO_SPEC"

# Decide whether torchaudio's compiled extension can stay.
"$PY" - <<'PYEOF'
import glob, os, sys
import importlib.util
import torch

spec = importlib.util.find_spec("torchaudio")
libs = glob.glob(os.path.join(os.path.dirname(spec.origin), "lib", "*.so"))
cpu_only = torch.version.cuda is None and getattr(torch.version, "hip", None) is None
if cpu_only:
    for lib in libs:
        os.remove(lib)
    print(f"[install] CPU-only torch {torch.__version__}: torchaudio runs in pure-Python mode "
          f"({len(libs)} CUDA libraries removed now)")
else:
    print(f"[install] torch {torch.__version__} (cuda={torch.version.cuda}): keeping torchaudio libraries")
PYEOF

echo "[install] speechbrain and the recipe's extra requirements"
pip_install -r requirements.txt
pip_install --no-deps resemblyzer==0.1.4

"$PY" - <<'PYEOF'
import torch, torchaudio, speechbrain
import torchaudio.functional as F
x = torch.randn(1, 16000)
assert F.resample(x, 16000, 24000).shape[-1] == 24000
print(f"[install] ok: torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
      f"speechbrain {speechbrain.__version__}")
PYEOF
