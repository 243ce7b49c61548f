#!/usr/bin/env bash
# Recreate a CPU-only virtual environment with the reference DAC implementation
# (descript-audio-codec 1.0.0, import name `dac`) for benchmarking.
#
# Usage: bash benchmarks/reference_venv.sh [VENV_DIR]   (default: .cache/dac-reference, which
# benchmarks/speed.py --precisions reference uses)
# Optional: DAC_WHEEL_DIR=/path/with/wheels to install the descript-* wheels from
# local files instead of PyPI.
#
# Notes:
#  * torch is pinned to 2.13.0 from the configured package index (a CPU build where the index
#    serves one; where it serves CUDA builds, point pip at https://download.pytorch.org/whl/cpu,
#    e.g. PIP_INDEX_URL); everything else is installed with --no-deps so that nothing pulls a CUDA torch.
#  * Only the dependencies needed to `import dac` and run DAC encode/decode are
#    installed (librosa, matplotlib, pyloudnorm, pystoi, ipython, ... are
#    imported lazily by audiotools and not needed here; `pip check` will list them).
#  * No torchaudio build exists for torch 2.13. The PyPI torchaudio 2.11.1 wheel
#    is installed with --no-deps and its compiled extensions (lib/*.so, linked
#    against CUDA libtorch 2.11) are deleted; torchaudio then imports as pure
#    Python (_IS_TORCHAUDIO_EXT_AVAILABLE=False). dac/audiotools only need
#    `import torchaudio` at import time.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${1:-.cache/dac-reference}"
PY="${PYTHON:-python3}"

if [ -e "$VENV" ]; then
    [ -f "$VENV/pyvenv.cfg" ] || { echo "$VENV exists and is not a virtual environment; not replacing it" >&2; exit 1; }
    rm -rf "$VENV"
fi
"$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"

# 1. torch (the index's build; see the notes above)
"$PIP" install torch==2.13.0

# 2. reference DAC + audiotools, no deps
if [ -n "${DAC_WHEEL_DIR:-}" ]; then
    "$PIP" install --no-deps \
        "$DAC_WHEEL_DIR/descript_audio_codec-1.0.0-py3-none-any.whl" \
        "$DAC_WHEEL_DIR/descript_audiotools-0.7.2-py2.py3-none-any.whl"
else
    "$PIP" install --no-deps descript-audio-codec==1.0.0 descript-audiotools==0.7.2
fi

# 3. import-time dependencies (all --no-deps)
"$PIP" install --no-deps \
    numpy==2.4.6 scipy==1.17.1 einops==0.8.2 \
    argbind==0.3.9 docstring_parser==0.18.0 PyYAML==6.0.4 \
    tqdm==4.70.1 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0 \
    julius==0.2.8
"$PIP" install --no-deps flatten-dict==0.5.0 six==1.17.0
"$PIP" install --no-deps soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
"$PIP" install --no-deps ffmpy==1.0.0
"$PIP" install --no-deps importlib-resources==7.1.0
# audiotools.ml.decorators does `from torch.utils.tensorboard import SummaryWriter`
"$PIP" install --no-deps tensorboard==2.21.0 protobuf==7.36.2 packaging==26.4 absl-py==2.5.1
"$PIP" install --no-deps randomname==0.2.1

# 4. torchaudio: real 2.11.1 package, compiled extensions removed
"$PIP" install --no-deps torchaudio==2.11.1
TA_DIR="$("$VENV/bin/python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))')"
rm -f "$TA_DIR"/lib/*.so

# 5. smoke test
"$VENV/bin/python" -c "import torch; print(torch.__version__)"
"$VENV/bin/python" -W ignore -c "from dac.model import DAC; import torch; m=DAC(); m.eval(); x=torch.randn(1,1,44100); z=m.encode(m.preprocess(x,44100))[0]; y=m.decode(z); print(y.shape)"
