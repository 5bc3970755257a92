#!/usr/bin/env bash
# On the GPU machine: gather the parts made by make_ort_gpu_parts.sh, then unpack onnxruntime-gpu.
#
#   benchmarks/unpack_ort_gpu.sh collect .ort-gpu0       # one call per carried part
#   source benchmarks/unpack_ort_gpu.sh unpack           # last call: unpack, set the paths
#
# `unpack` checks the archive's SHA-256, unpacks it into /tmp/ort and exports GATE_GPU_EXTRA_PATH (read
# by gpu_run.py) and LD_LIBRARY_PATH with the CUDA libraries that come with the machine's torch.
parts=/tmp/ort-parts
case "${1:-}" in
    collect)
        mkdir -p "$parts" && cp "${2:?which folder}"/* "$parts"/ && ls "$parts"
        ;;
    unpack)
        expected=$(cat "$parts/ort.sha256")
        actual=$(cat "$parts"/part-* | sha256sum | cut -d' ' -f1)
        if [ "$expected" != "$actual" ]; then
            echo "onnxruntime-gpu parts are incomplete or damaged (sha256 $actual, expected $expected)" >&2
            return 1 2>/dev/null || exit 1
        fi
        mkdir -p /tmp/ort && cat "$parts"/part-* | xz -d -T0 | tar x -C /tmp/ort
        LD_LIBRARY_PATH=$(python3 -c "import glob, os, torch; root = os.path.dirname(os.path.dirname(torch.__file__)); print(':'.join(sorted({os.path.dirname(p) for p in glob.glob(root + '/nvidia/**/lib*.so*', recursive=True)})))")
        export LD_LIBRARY_PATH GATE_GPU_EXTRA_PATH=/tmp/ort
        PYTHONPATH=/tmp/ort python3 -c "import torch, onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())"
        ;;
    *)
        echo "usage: unpack_ort_gpu.sh collect FOLDER | unpack" >&2
        return 2 2>/dev/null || exit 2
        ;;
esac
