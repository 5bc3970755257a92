set -x
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
python -c "import torch, onnxruntime as ort; print('torch', torch.__version__, 'cuda', torch.cuda.is_available()); print('ort', ort.__version__, ort.get_available_providers())"
ls /usr/local/cuda*/lib64/libcublasLt.so* 2>&1 | head -3
python - <<'PY' 2>&1
import torch, sys, time
from pathlib import Path
from torch import nn
from gate.model import ModelSpec, load_model, export_to_onnx
from gate.errors import ModelError
m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
p = export_to_onnx(m, torch.rand(2,1,8,8), Path("/tmp/g/m.onnx"), exporter="torchscript").path
t=time.time(); mut = load_model(ModelSpec(str(p), device="auto"), work_dir=Path("/tmp/g")); print("auto ->", mut.provider, mut.device, round(time.time()-t,2), "s")
try:
    mut = load_model(ModelSpec(str(p), device="cuda"), work_dir=Path("/tmp/g")); print("cuda ->", mut.provider)
except ModelError as e: print("cuda -> ModelError:", e)
PY
timeout 200 python -m pytest tests/model/test_session.py tests/model/test_onnx_file.py -q -m "gpu or not gpu" -p no:cacheprovider 2>&1 | tail -5
