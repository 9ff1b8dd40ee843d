"""ONNX Runtime as a benchmark lever: the ArenaModel's encoder exported to ONNX, fused by ONNX Runtime's transformer
optimizer, optionally dynamically quantized to int8, and run in place of the PyTorch encoder.

Only the encoder runs in ONNX Runtime; pooling and the head stay the project's PyTorch code, so a path that uses
`onnx_runner` differs from the model called directly only in how the encoder executes.

Needs onnx and onnxruntime (the `dev` extra).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput


class _HiddenStates(nn.Module):
    """The encoder as a function of (input_ids, attention_mask) -> the hidden states the model pools (the mean of its
    last `layers` layers, `ArenaConfig.pool_layers`): the graph that is exported."""

    def __init__(self, encoder: nn.Module, layers: int = 1) -> None:
        super().__init__()
        self.encoder, self.layers = encoder, layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.layers > 1)
        if self.layers == 1:
            return output.last_hidden_state
        return torch.stack(output.hidden_states[-self.layers:]).mean(0)


def export_encoder(model, out_dir: Path, int8: bool = True) -> dict[str, Path]:
    """Export `model.encoder` (an ArenaModel's) to `out_dir`: `encoder.onnx` (fp32, fused by
    `onnxruntime.transformers.optimizer` for its `model_type`) and, with `int8`, `encoder_int8.onnx` (dynamic
    quantization: per-channel int8 weights, activations quantized per call). Returns {"fp32": path, "int8": path}.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = copy.deepcopy(model.encoder).eval()
    # ONNX Runtime's attention fusion recognises the eager attention graph, not the one SDPA exports to.
    encoder.set_attn_implementation("eager")
    raw = out_dir / "encoder_raw.onnx"
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    axes = {0: "batch", 1: "length"}
    pooled_layers = _HiddenStates(encoder, getattr(model.config, "pool_layers", 1))
    torch.onnx.export(pooled_layers, example, str(raw), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes})
    config = model.config.encoder_config
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    fused = optimize_model(str(raw), model_type=config.model_type, num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    paths = {"fp32": out_dir / "encoder.onnx"}
    fused.save_model_to_file(str(paths["fp32"]))
    if int8:
        paths["int8"] = out_dir / "encoder_int8.onnx"
        # DefaultTensorType: shape inference cannot type the outputs of the fused (contrib-domain) operators.
        quantize_dynamic(str(paths["fp32"]), str(paths["int8"]), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return paths


class OnnxRuntimeEncoder(nn.Module):
    """Stands in for an ArenaModel's `encoder`: runs an exported graph in an ONNX Runtime CPU session."""

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                output_hidden_states: bool = False) -> BaseModelOutput:
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        hidden = torch.from_numpy(self.session.run(None, feeds)[0])
        # The graph already averaged the layers the model pools: handed back as the only "layer", its mean is itself.
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,) if output_hidden_states else None)


def onnx_runner(model, path: Path, threads: int):
    """An eval-mode copy of an ArenaModel whose encoder is `OnnxRuntimeEncoder(path)`; the head is copied (small),
    the PyTorch encoder is not."""
    return copy.deepcopy(model, memo={id(model.encoder): OnnxRuntimeEncoder(path, threads)}).eval()
