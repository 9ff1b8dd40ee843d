"""ONNX Runtime as a benchmark lever: the package's own fp32 export (`precision_arena.export_encoder`, what
precision="onnx-fp32" runs) and, on top of it, a dynamically quantized int8 copy (not exact, so never a default).

Only the encoder runs in ONNX Runtime; pooling and the head stay the project's PyTorch code, so a path that uses
`onnx_runner` differs from the model called directly only in how the encoder executes.

Needs onnx and onnxruntime (dependencies of the package).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from precision_arena import OnnxRuntimeEncoder, export_encoder as export_fp32  # noqa: E402


def export_encoder(model, out_dir: Path, int8: bool = True) -> dict[str, Path]:
    """Export `model.encoder` (an ArenaModel's) under `out_dir`: the fp32 graph as precision="onnx-fp32" has it and,
    with `int8`, `encoder_int8.onnx` beside it (dynamic quantization: per-channel int8 weights, activations quantized
    per call). Returns {"fp32": path, "int8": path}."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    paths = {"fp32": export_fp32(model, cache_dir=Path(out_dir))}
    if int8:
        paths["int8"] = paths["fp32"].with_name("encoder_int8.onnx")
        # DefaultTensorType: shape inference cannot type the outputs of the fused (contrib-domain) operators.
        quantize_dynamic(str(paths["fp32"]), str(paths["int8"]), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return paths


def onnx_runner(model, path: Path, threads: int):
    """An eval-mode copy of an ArenaModel whose encoder is `OnnxRuntimeEncoder(path)`; the head is copied (small),
    the PyTorch encoder is not."""
    return copy.deepcopy(model, memo={id(model.encoder): OnnxRuntimeEncoder(path, threads)}).eval()
