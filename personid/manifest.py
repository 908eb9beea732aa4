"""The model manifest (`models/NAME.json` beside `models/NAME.onnx`): the one contract between training and service.

Export builds it with these models and checks it with `check_model`, the very code the service runs before it
serves; evaluation, losses, metrics and the service read head columns through `head_slices`. A stale or
hand-edited manifest fails with a `ManifestError` that says what is wrong instead of returning wrong labels.
Torch-free: numpy and pydantic only (plus onnxruntime where a session is opened).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT_VERSION: Final = 1
HEAD_TYPES = ("softmax", "binary")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ManifestError(ValueError):
    """The manifest is missing, malformed, or disagrees with the ONNX graph."""


class HeadLike(Protocol):
    """An attribute head as both sides see it (`training` schema heads and manifest `HeadSpec` satisfy it)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def size(self) -> int: ...


def head_size(head_type: str, labels: Sequence[str]) -> int:
    """Output columns of a head: one per class for softmax, a single probability of `labels[1]` for binary."""
    return 1 if head_type == "binary" else len(labels)


def head_slices(heads: Sequence[HeadLike]) -> list[slice]:
    """The columns of each head in the concatenated attribute output, in head order."""
    slices, offset = [], 0
    for head in heads:
        if head.type not in HEAD_TYPES:
            raise ValueError(f"head type must be 'softmax' or 'binary', got {head.type!r}")
        size = int(head.size)
        if head.type == "binary" and size != 1:
            raise ValueError(f"a binary head has one column, got size {size}")
        if head.type == "softmax" and size < 2:
            raise ValueError(f"a softmax head needs at least 2 classes, got size {size}")
        slices.append(slice(offset, offset + size))
        offset += size
    return slices


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())


class InputSpec(_Strict):
    """How an image becomes the model's input row (`personid.imaging.to_array` does exactly this)."""

    name: str = "images"
    layout: Literal["NCHW"] = "NCHW"
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    color_order: Literal["RGB"] = "RGB"
    resize: Literal["bilinear"] = "bilinear"
    scale: float = Field(255.0, gt=0)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dtype: Literal["float32"] = "float32"

    @model_validator(mode="after")
    def _positive_std(self) -> InputSpec:
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {list(self.std)}")
        return self


class EmbeddingSpec(_Strict):
    name: str = "embedding"
    dim: int = Field(gt=0)
    normalized: bool = True


class HeadSpec(_Strict):
    name: str
    type: Literal["softmax", "binary"]
    labels: list[str] = Field(min_length=2)
    offset: int = Field(ge=0)
    size: int = Field(gt=0)

    @model_validator(mode="after")
    def _size_matches_labels(self) -> HeadSpec:
        if self.type == "binary" and len(self.labels) != 2:
            raise ValueError(f"binary head {self.name!r} needs exactly 2 labels, got {self.labels}")
        expected = head_size(self.type, self.labels)
        if self.size != expected:
            raise ValueError(f"head {self.name!r} ({self.type}, {len(self.labels)} labels) must have size {expected}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"head {self.name!r} has duplicate labels {self.labels}")
        return self


class AttributesSpec(_Strict):
    name: str = "attributes"
    size: int = Field(gt=0)
    heads: list[HeadSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _heads_tile_the_output(self) -> AttributesSpec:
        names = [head.name for head in self.heads]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate head names in {names}")
        position = 0
        for head in self.heads:
            if head.offset != position:
                raise ValueError(f"head {head.name!r} starts at column {head.offset}, expected {position}")
            position += head.size
        if position != self.size:
            raise ValueError(f"heads cover {position} columns but attributes.size is {self.size}")
        return self

    @classmethod
    def of(cls, heads: Sequence[HeadLike], name: str = "attributes") -> AttributesSpec:
        """The block for `heads` in order, offsets from `head_slices`."""
        specs = [
            HeadSpec(name=h.name, type=h.type, labels=list(h.labels), offset=s.start, size=s.stop - s.start)
            for h, s in zip(heads, head_slices(heads), strict=True)
        ]
        return cls(name=name, size=sum(h.size for h in specs), heads=specs)


class OutputsSpec(_Strict):
    embedding: EmbeddingSpec
    attributes: AttributesSpec


class CalibrationSpec(_Strict):
    """How the graph's attribute probabilities were calibrated (`personid export --calibrate-on`); absent when they
    were not. The temperatures are already inside the graph: readers never apply them again."""

    method: Literal["temperature"] = "temperature"
    temperatures: dict[str, float]  # head name -> T; each head's logits are divided by T before softmax / sigmoid
    fitted_on: str = Field(min_length=1)  # the held-out data the temperatures were fitted on
    ece_before: float | None = None  # mean ECE over heads on the held-out check half, before and after
    ece_after: float | None = None
    details: dict[str, Any] | None = None  # per-head figures, image counts, bins

    @model_validator(mode="after")
    def _positive_temperatures(self) -> CalibrationSpec:
        bad = {name: t for name, t in self.temperatures.items() if not t > 0}
        if bad:
            raise ValueError(f"temperatures must be positive, got {bad}")
        return self


class Manifest(_Strict):
    format_version: Literal[1] = FORMAT_VERSION
    model_id: str = Field(min_length=1)
    name: str = "model"
    created: str | None = None
    opset: int | None = None
    exporter: str | None = None
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    backbone: str | None = None
    input: InputSpec
    outputs: OutputsSpec
    groups: dict[str, list[str]]
    training: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None  # null when exported with --no-verify
    calibration: CalibrationSpec | None = None  # null: the probabilities are the model's own, uncalibrated

    @model_validator(mode="after")
    def _groups_name_heads(self) -> Manifest:
        heads = {head.name for head in self.outputs.attributes.heads}
        grouped = [name for members in self.groups.values() for name in members]
        unknown = sorted(set(grouped) - heads)
        if unknown:
            raise ValueError(f"groups name heads that do not exist: {unknown}")
        calibrated = sorted(set(self.calibration.temperatures) - heads) if self.calibration else []
        if calibrated:
            raise ValueError(f"calibration names heads that do not exist: {calibrated}")
        return self

    @property
    def heads(self) -> dict[str, HeadSpec]:
        return {head.name: head for head in self.outputs.attributes.heads}

    @property
    def display_groups(self) -> dict[str, list[str]]:
        """The manifest's groups, plus `other` for heads it does not group (so none is ever hidden)."""
        grouped = {name for members in self.groups.values() for name in members}
        other = [head.name for head in self.outputs.attributes.heads if head.name not in grouped]
        return {**self.groups, "other": other} if other else dict(self.groups)

    def public(self) -> dict[str, Any]:
        """What `/v1/model` shows: everything except the training config (paths and internals)."""
        data = self.model_dump(mode="json")
        if self.training is not None:
            data["training"] = {key: value for key, value in self.training.items() if key != "config"}
        return data


def manifest_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def model_id(onnx: bytes | str | Path, input_spec: InputSpec, outputs: OutputsSpec) -> str:
    """`sha256-` + the first 16 hex digits of the SHA-256 of the ONNX file (its bytes or its path) and of the
    canonical JSON of the manifest's `input` and `outputs`.

    The id names what makes embeddings comparable and stored labels meaningful: the graph, how an image becomes
    its input row (size, resize, scale, mean, std, colour order) and how its outputs are read (embedding spec;
    heads with their names, types, labels and order). Editing any of them gives another id.
    """
    data = onnx if isinstance(onnx, bytes) else Path(onnx).read_bytes()
    spec = {"input": input_spec.model_dump(mode="json"), "outputs": outputs.model_dump(mode="json")}
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    digest = hashlib.sha256(data)
    digest.update(b"\0personid-manifest\0" + canonical.encode("ascii"))
    return "sha256-" + digest.hexdigest()[:16]


def parse_manifest(raw: Any, where: str = "manifest") -> Manifest:
    """Validate a manifest dict; every failure is a `ManifestError` that lists what is wrong."""
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise ManifestError(f"{where} is invalid: {problems}") from exc


def load_manifest(onnx_path: str | Path) -> Manifest:
    """Read and validate the manifest beside `onnx_path`; every failure is a `ManifestError` saying what is wrong."""
    path = manifest_path(onnx_path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found beside the model {onnx_path}; export writes both")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {path} is not readable JSON: {exc}") from exc
    return parse_manifest(raw, f"manifest {path}")


def write_manifest(manifest: Manifest, onnx_path: str | Path) -> Path:
    """Check `manifest` against the graph at `onnx_path` exactly as the service will, then write it beside it."""
    check_model(manifest, onnx_path)
    path = manifest_path(onnx_path)
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return path


def check_model(manifest: Manifest, onnx_path: str | Path, session: Any = None) -> None:
    """Everything the service checks before serving: the model id, then the graph (opened on the CPU if no
    `session` is given) against the manifest."""
    check_model_id(manifest, Path(onnx_path).read_bytes(), onnx_path)
    if session is None:
        from personid.session import open_session

        session = open_session(onnx_path)
    check_against_session(manifest, session)


def legacy_model_id(onnx_bytes: bytes) -> str:
    """The id personid stamped before the manifest's input and outputs joined it: the ONNX bytes alone. Galleries
    stamped with it are adopted by the same model (`app.gallery.Gallery.open`), so an upgrade keeps them."""
    return "sha256-" + hashlib.sha256(onnx_bytes).hexdigest()[:16]


def check_model_id(manifest: Manifest, onnx_bytes: bytes, onnx_path: str | Path) -> None:
    """A manifest left beside a re-exported model, or one whose preprocessing or heads were edited after export,
    would mix incomparable embeddings into a gallery or mislabel its stored attributes: refuse it."""
    actual = model_id(onnx_bytes, manifest.input, manifest.outputs)
    if manifest.model_id == legacy_model_id(onnx_bytes):
        raise ManifestError(
            f"manifest model_id {manifest.model_id} of {onnx_path} was computed by an older personid from the ONNX "
            "bytes alone; the id now also covers the manifest's input and outputs, so that an edit of them is "
            f"caught. Export again, or, if the manifest is exactly as that export wrote it, set its model_id to "
            f"{actual}; a gallery made with the old id must be re-indexed"
        )
    if manifest.model_id != actual:
        raise ManifestError(
            f"manifest model_id {manifest.model_id} does not match {onnx_path} with this manifest's input and "
            f"outputs ({actual}): the ONNX file was re-exported, or the manifest's preprocessing (input: size, "
            "resize, scale, mean, std, colour order) or heads/embedding (outputs) changed since export; export "
            "again to write both files together"
        )


def _dims(shape: list[Any]) -> list[int | None]:
    """ORT reports dynamic dims as strings or None; keep only the fixed ones."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def check_against_session(manifest: Manifest, session: Any) -> None:
    """Raise `ManifestError` unless the ONNX graph has exactly the inputs and outputs the manifest describes.

    Static shapes are compared first; then one dry run on a zero batch of 2 checks the sizes the graph really
    produces (exporters may leave output dims symbolic) and that attributes are probabilities, as promised.
    """
    _check_input(manifest.input, session.get_inputs())
    outputs = {o.name: o for o in session.get_outputs()}
    for label, name, size in (
        ("embedding", manifest.outputs.embedding.name, manifest.outputs.embedding.dim),
        ("attributes", manifest.outputs.attributes.name, manifest.outputs.attributes.size),
    ):
        if name not in outputs:
            raise ManifestError(f"the manifest's {label} output {name!r} is not in the graph outputs {sorted(outputs)}")
        out_shape = _dims(outputs[name].shape)
        if len(out_shape) != 2 or (out_shape[1] is not None and out_shape[1] != size):
            raise ManifestError(
                f"the graph output {name!r} has shape {outputs[name].shape}; the manifest says N x {size} ({label})"
            )
    _check_dry_run(manifest, session)


def _check_input(spec: InputSpec, inputs: list[Any]) -> None:
    if len(inputs) != 1:
        raise ManifestError(
            f"the graph has {len(inputs)} inputs {[i.name for i in inputs]}; expected one ({spec.name})"
        )
    graph_input = inputs[0]
    if graph_input.name != spec.name:
        raise ManifestError(f"the graph input is {graph_input.name!r} but the manifest says {spec.name!r}")
    if graph_input.type != "tensor(float)":
        raise ManifestError(f"the graph input {spec.name!r} is {graph_input.type}, the manifest says float32")
    shape = _dims(graph_input.shape)
    expected = [None, 3, spec.height, spec.width]
    if len(shape) != 4 or any(g is not None and g != e for g, e in zip(shape[1:], expected[1:], strict=True)):
        raise ManifestError(
            f"the graph input {spec.name!r} has shape {graph_input.shape}; the manifest says N x 3 x {spec.height} x "
            f"{spec.width}"
        )
    if shape[0] is not None:
        raise ManifestError(f"the graph input {spec.name!r} has a fixed batch size {shape[0]}; export with dynamic N")


def _check_dry_run(manifest: Manifest, session: Any) -> None:
    spec, outputs = manifest.input, manifest.outputs
    batch = np.zeros((2, 3, spec.height, spec.width), dtype=np.float32)
    try:
        embedding, attributes = session.run([outputs.embedding.name, outputs.attributes.name], {spec.name: batch})
    except Exception as exc:
        raise ManifestError(f"the graph fails on a batch of 2 at {spec.height}x{spec.width}: {exc}") from exc
    if embedding.shape != (2, outputs.embedding.dim):
        raise ManifestError(
            f"the graph gives embeddings of shape {embedding.shape}, the manifest says N x {outputs.embedding.dim}"
        )
    if attributes.shape != (2, outputs.attributes.size):
        raise ManifestError(
            f"the graph gives attributes of shape {attributes.shape}, the manifest says N x {outputs.attributes.size}"
        )
    if not np.all((attributes >= 0) & (attributes <= 1)):
        raise ManifestError(
            "the graph's attributes output is not probabilities (values outside 0..1); export "
            "applies softmax / sigmoid in the graph"
        )
    if outputs.embedding.normalized and not np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-2):
        raise ManifestError("the manifest says embeddings are L2-normalised but the graph's are not")
