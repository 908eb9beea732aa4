"""Lower-precision variants of an exported fp32 ONNX model, and how far they drift from it.

- fp16 (GPU serving): onnxruntime's own float16 converter, inputs/outputs kept float32 so the service and
  the manifest's `input.dtype` do not change. The L2 normalisation, the per-head softmax/sigmoid and GeM's
  Pow stay in fp32: a 512-term sum of squares in fp16 leaves embedding norms off by about 1e-2, and x**p
  overflows fp16's 65504 for ResNet-sized activations.
- int8 (CPU serving): static QDQ quantisation (per-channel weights), calibrated on images preprocessed exactly
  like the service does. Only convolutions are quantised: they hold nearly all the compute, while the small
  embedding/attribute heads stay fp32 where int8 would cost accuracy for no speed. The first few
  convolutions (the stem) stay fp32 as well: measured on MobileNetV2 at 256x128, quantising its first four
  drops the embedding cosine to fp32 from 0.993 to 0.81 (per-tensor activation ranges of the early
  depthwise block, the problem described by Nagel et al., "Data-Free Quantization", 2019).

No torch here: the inputs are ONNX files and numpy arrays.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
from onnxruntime.transformers.onnx_model import OnnxModel
from tqdm import tqdm

from personid.manifest import HeadLike, head_slices

FP16_KEEP_FP32_OPS = ("Pow", "Gemm", "ReduceL2", "Div", "Softmax", "Sigmoid")
INT8_OPS = ("Conv",)
STEM_CONVS = 4


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed image batches (N x 3 x H x W float32) to the calibrator, with a progress bar."""

    def __init__(self, images: np.ndarray, input_name: str = "images", batch_size: int = 8) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.float32:
            raise ValueError(f"calibration images must be float32 N x 3 x H x W, got {images.dtype} {images.shape}")
        if len(images) == 0:
            raise ValueError("calibration needs at least one image")
        self.batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        self.input_name = input_name
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        if batch is None:
            self._progress.close()
            return None
        self._progress.update(len(batch))
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._iter = iter(self.batches)
        self._progress = tqdm(total=sum(len(b) for b in self.batches), desc="int8 calibration", unit="img")


def to_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write the fp16 variant of `src` to `dst` (float32 inputs/outputs)."""
    model = onnx.load(str(src))
    block = [*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32_OPS]
    converted = OnnxModel(convert_float_to_float16(model, keep_io_types=True, op_block_list=block))
    converted.topological_sort()  # the converter appends the input casts at the end of the node list
    onnx.checker.check_model(converted.model)
    onnx.save(converted.model, str(dst))
    return Path(dst)


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    input_name: str = "images",
    fp32_convs: int = STEM_CONVS,
    batch_size: int = 8,
) -> Path:
    """Write the static int8 QDQ variant of `src` to `dst`, calibrated (MinMax) on `calibration`.

    The first `fp32_convs` convolutions in graph order stay fp32 (see the module docstring).
    Symbolic shape inference is skipped: it fails on the Expand of `F.normalize` and is only needed for
    transformer-style graphs; ONNX shape inference and ORT's graph optimisation still run.
    """
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in INT8_OPS]
        quantize_static(
            str(prepared),
            str(dst),
            ImageCalibrationReader(calibration, input_name, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(INT8_OPS),
            nodes_to_exclude=convs[:fp32_convs],
        )
    return Path(dst)


def agreement(
    reference: tuple[np.ndarray, np.ndarray],
    variant: tuple[np.ndarray, np.ndarray],
    heads: Sequence[HeadLike],
) -> dict[str, Any]:
    """How a variant's (embedding, attributes) agree with the reference's on the same images.

    Embeddings: cosine per image (mean, min). Attributes, per head: the fraction of images with the same
    decision (argmax for softmax heads, probability >= 0.5 for binary heads).
    """
    ref_emb, ref_attr = reference
    emb, attr = variant
    cosine = np.sum(ref_emb * emb, axis=1) / (np.linalg.norm(ref_emb, axis=1) * np.linalg.norm(emb, axis=1))
    per_head = {}
    for head, cols in zip(heads, head_slices(heads), strict=True):
        if head.type == "softmax":
            same = ref_attr[:, cols].argmax(axis=1) == attr[:, cols].argmax(axis=1)
        else:
            same = (ref_attr[:, cols] >= 0.5) == (attr[:, cols] >= 0.5)
        per_head[head.name] = float(np.mean(same))
    return {
        "embedding_cosine_mean": float(cosine.mean()),
        "embedding_cosine_min": float(cosine.min()),
        "attribute_agreement": per_head,
        "attribute_agreement_mean": float(np.mean(list(per_head.values()))),
    }
