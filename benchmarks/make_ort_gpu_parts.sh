#!/usr/bin/env bash
# Pack onnxruntime-gpu for a GPU machine that has only the CPU build, in parts small enough to carry.
#
# The wheel is about 255 MB; a device call carries at most 64 MiB. This downloads the wheel for the GPU
# machine's Python, drops the TensorRT provider, packs the rest as one xz archive (about 200 MB) and splits
# it into folders .ort-gpu0, .ort-gpu1, ... (kept out of git). The first part is smaller, leaving room for
# .gpu-deps in the same call. Carry one folder per call on a warm machine, each command starting with
# `benchmarks/unpack_ort_gpu.sh collect .ort-gpuK`; the last one runs `unpack` (see docs/performance.md).
#
#   benchmarks/make_ort_gpu_parts.sh 3.12 1.31.1
set -euo pipefail

pyver=${1:?usage: make_ort_gpu_parts.sh PYTHON_VERSION ORT_VERSION, e.g. 3.12 1.31.1}
version=${2:?usage: make_ort_gpu_parts.sh PYTHON_VERSION ORT_VERSION}
first_part=$((42 * 1024 * 1024))  # beside .gpu-deps (about 18 MiB) in the first call
part=$((52 * 1024 * 1024))  # 4 parts in all

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$work" "onnxruntime-gpu==$version"
mkdir "$work/tree"
python -m zipfile -e "$work"/onnxruntime_gpu-*.whl "$work/tree"
rm -f "$work"/tree/onnxruntime/capi/libonnxruntime_providers_tensorrt.so
tar cf - -C "$work/tree" . | xz -9 -T0 > "$work/ort.tar.xz"

rm -rf .ort-gpu[0-9]*
head -c "$first_part" "$work/ort.tar.xz" > "$work/part-00"
tail -c +"$((first_part + 1))" "$work/ort.tar.xz" | split -b "$part" -d -a 2 --numeric-suffixes=1 - "$work/part-"
count=0
for piece in "$work"/part-*; do
    mkdir -p ".ort-gpu$count"
    mv "$piece" ".ort-gpu$count/"
    if [ -d .git ] && ! git check-ignore -q ".ort-gpu$count" 2>/dev/null; then
        echo "/.ort-gpu$count/" >> .git/info/exclude
    fi
    count=$((count + 1))
done
sha256sum "$work/ort.tar.xz" | cut -d' ' -f1 > .ort-gpu0/ort.sha256
echo "onnxruntime-gpu $version for Python $pyver in $count parts: .ort-gpu0 .. .ort-gpu$((count - 1))"
