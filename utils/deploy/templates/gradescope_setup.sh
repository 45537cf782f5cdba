#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu base image), from
# the folder that holds the zip's files (/autograder/source). It makes a Python 3.11 venv in
# $ROOT/venv with CPU-only torch/torchvision (PyTorch's CPU index) and requirements.txt.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
TORCH_INDEX="https://download.pytorch.org/whl/cpu"

if ! command -v python3.11 >/dev/null 2>&1; then
    apt-get update
    if ! apt-get install -y python3.11 python3.11-venv; then
        apt-get install -y software-properties-common
        add-apt-repository -y ppa:deadsnakes/ppa
        apt-get update
        apt-get install -y python3.11 python3.11-venv
    fi
fi
python3.11 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --upgrade pip
# torch and torchvision first, from the CPU index and in requirements.txt's ranges (no CUDA wheels).
mapfile -t TORCH < <(grep -E '^(torch|torchvision)[<>=!~ ]' "$SOURCE/requirements.txt")
"$ROOT/venv/bin/python" -m pip install --index-url "$TORCH_INDEX" "${TORCH[@]}"
"$ROOT/venv/bin/python" -m pip install -r "$SOURCE/requirements.txt"
# Fail the image build now, not at the first submission, if the kit does not import.
cd "$SOURCE" && PYTHONPATH="$SOURCE" "$ROOT/venv/bin/python" -c "import torch, torchvision, autograder.staff.gradescope"
# The final project's hidden test set, rendered once into the image rather than for each submission.
if [ "{{hw}}" = "challenge" ]; then
    cd "$SOURCE" && PYTHONPATH="$SOURCE" "$ROOT/venv/bin/python" -m autograder.staff.hidden_set
fi
