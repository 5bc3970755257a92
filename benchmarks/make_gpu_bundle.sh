#!/usr/bin/env bash
# Bundle the Python packages gate needs that the GPU machine lacks, for benchmarks/gpu_run.py.
#
# The GPU machine has torch (CUDA), numpy, scipy, pillow, click, onnx, onnxscript, onnxruntime (CPU) and
# pytest, but no pydantic, ruamel.yaml or captum, and no network. This downloads those wheels for the
# GPU machine's Python (same versions as installed here, so gate behaves the same), unpacks them into
# DEST (default .gpu-deps, kept out of git via .git/info/exclude) and checks the bundle stays under
# 60 MiB, the most a device call carries besides the tree.
#
#   benchmarks/make_gpu_bundle.sh 3.12            # then carry .gpu-deps to the GPU machine
#   benchmarks/make_gpu_bundle.sh 3.11 /tmp/deps  # another Python, another folder
set -euo pipefail

pyver=${1:?usage: make_gpu_bundle.sh PYTHON_VERSION [DEST], e.g. 3.12}
dest=${2:-.gpu-deps}
limit_mib=60
# Pure-python or small compiled packages; typing-extensions because pydantic needs a recent one. The
# peers the attack benchmark compares with come along too (ART's AutoAttack needs multiprocess and dill).
names=(pydantic pydantic-core annotated-types typing-inspection typing-extensions ruamel.yaml safetensors captum
       torchattacks adversarial-robustness-toolbox multiprocess dill)

version_of() { python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
specs=()
for name in "${names[@]}"; do specs+=("$name==$(version_of "$name")"); done

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
python -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$wheels" "${specs[@]}"

rm -rf "$dest"
mkdir -p "$dest"
for wheel in "$wheels"/*.whl; do python -m zipfile -e "$wheel" "$dest"; done
find "$dest" -name '__pycache__' -prune -exec rm -rf {} +
echo "$pyver" > "$dest/PYTHON_VERSION"  # gpu_run.py uses the bundle only on this Python

size_mib=$(du -sm "$dest" | cut -f1)
echo "bundled into $dest (${size_mib} MiB) for Python $pyver: ${specs[*]}"
if (( size_mib > limit_mib )); then
    echo "the bundle is over ${limit_mib} MiB: too large to carry" >&2
    exit 1
fi
# Keep it out of git status (it is carried explicitly, never committed).
if [ -d .git ] && ! git check-ignore -q "$dest" 2>/dev/null; then
    echo "/${dest#./}/" >> .git/info/exclude
fi
