"""The attribute schema: which heads the model has, their labels, and how .mat values become targets.

The schema is data (`training/data/schemas/*.json`): the model's head layout, the losses, the export manifest and
the service are all built from it, so a dataset with other attributes needs a new JSON file, not new code.

Target encoding (one int per head, `-1` = unknown, ignored by losses and metrics):
- `binary` head, `source {"field", "values": [v0, v1]}`: target = index of the value (0 or 1); the model's
  one output column is the probability of `labels[1]`.
- `softmax` head, `source {"field", "values"}`: target = index of the value in `values`.
- `softmax` head, `source {"fields"}` (one-hot "no 1 / yes 2" columns, the colours): target = index of the
  field whose value is 2. No field at 2 -> -1 (the real files have identities without a colour); more than
  one at 2 -> -1 as well (ambiguous; `ambiguous_heads` lets loaders report it).
A head without a `source` can still be trained from a CSV (labels by name), not from a .mat file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from personid.manifest import HEAD_TYPES, head_size, head_slices

SCHEMA_DIR = Path(__file__).parent / "schemas"
BUILTIN: dict[str, str] = {"market1501": "market.json", "dukemtmc": "duke.json"}
YES = 2  # the "yes" value of the one-hot colour fields in the published .mat files
ONE_HOT_VALUES = (1, 2)


class SchemaError(ValueError):
    """An invalid schema file or dict; the message says which head or group is at fault."""


class AttributeValueError(ValueError):
    """A raw .mat value or a label string that the schema does not allow."""


@dataclass(frozen=True)
class Head:
    name: str
    type: Literal["softmax", "binary"]
    labels: tuple[str, ...]
    source: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def size(self) -> int:
        """Output columns: one per class for softmax, a single probability column for binary."""
        return head_size(self.type, self.labels)

    @property
    def fields(self) -> tuple[str, ...]:
        """The .mat fields this head reads."""
        if "field" in self.source:
            return (self.source["field"],)
        return tuple(self.source.get("fields", ()))

    def validate(self) -> None:
        where = f"head {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"head name must be a non-empty string, got {self.name!r}")
        if self.type not in HEAD_TYPES:
            raise SchemaError(f"{where}: unknown type {self.type!r}; expected one of {list(HEAD_TYPES)}")
        if not self.labels:
            raise SchemaError(f"{where}: empty labels")
        if not all(isinstance(label, str) and label for label in self.labels):
            raise SchemaError(f"{where}: labels must be non-empty strings, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise SchemaError(f"{where}: duplicate labels in {list(self.labels)}")
        if self.type == "binary" and len(self.labels) != 2:
            raise SchemaError(f"{where}: a binary head has exactly 2 labels, got {list(self.labels)}")
        if self.type == "softmax" and len(self.labels) < 2:
            raise SchemaError(f"{where}: a softmax head needs at least 2 labels, got {list(self.labels)}")
        if not isinstance(self.source, dict):
            raise SchemaError(f"{where}: source must be an object, got {self.source!r}")
        if not self.source:
            return
        if ("field" in self.source) == ("fields" in self.source):
            raise SchemaError(f"{where}: source needs exactly one of 'field' (+ 'values') or 'fields'")
        if "field" in self.source:
            values = self.source.get("values")
            if not isinstance(values, list) or len(values) != len(self.labels):
                raise SchemaError(f"{where}: source.values must list one value per label ({len(self.labels)})")
            if len(set(values)) != len(values) or not all(isinstance(v, int) for v in values):
                raise SchemaError(f"{where}: source.values must be distinct integers, got {values}")
        else:
            fields = self.source["fields"]
            if self.type != "softmax":
                raise SchemaError(f"{where}: source.fields (one-hot columns) is only for softmax heads")
            if not isinstance(fields, list) or len(fields) != len(self.labels):
                raise SchemaError(f"{where}: source.fields must list one field per label ({len(self.labels)})")
        unknown = set(self.source) - {"field", "values", "fields"}
        if unknown:
            raise SchemaError(f"{where}: unknown source keys {sorted(unknown)}")

    def encode(self, raw: Mapping[str, int]) -> int:
        """The target of one identity from its raw .mat values (see the module docstring)."""
        if not self.source:
            raise AttributeValueError(f"head {self.name!r} has no .mat source in the schema")
        missing = [f for f in self.fields if f not in raw]
        if missing:
            raise AttributeValueError(f"head {self.name!r}: missing fields {missing}")
        if "field" in self.source:
            value = int(raw[self.source["field"]])
            values = self.source["values"]
            if value not in values:
                raise AttributeValueError(
                    f"head {self.name!r}: field {self.source['field']!r} has value {value}, expected one of {values}"
                )
            return values.index(value)
        yes = []
        for i, name in enumerate(self.fields):
            value = int(raw[name])
            if value not in ONE_HOT_VALUES:
                raise AttributeValueError(
                    f"head {self.name!r}: field {name!r} has value {value}, expected one of {list(ONE_HOT_VALUES)}"
                )
            if value == YES:
                yes.append(i)
        return yes[0] if len(yes) == 1 else -1

    def is_ambiguous(self, raw: Mapping[str, int]) -> bool:
        """True when several one-hot fields say yes (encoded as unknown)."""
        return "fields" in self.source and sum(int(raw.get(f, 0)) == YES for f in self.fields) > 1

    def index(self, label: str) -> int:
        """Target of a label string (CSV); empty = unknown (-1)."""
        if label == "":
            return -1
        try:
            return self.labels.index(label)
        except ValueError:
            raise AttributeValueError(
                f"head {self.name!r}: unknown label {label!r}; expected one of {list(self.labels)} or empty"
            ) from None


@dataclass(frozen=True)
class AttributeSchema:
    name: str
    heads: tuple[Head, ...]
    groups: dict[str, list[str]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.heads:
            raise SchemaError(f"schema {self.name!r}: no heads")
        names = [h.name for h in self.heads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"schema {self.name!r}: duplicate head names {dupes}")
        for head in self.heads:
            try:
                head.validate()
            except SchemaError as exc:
                raise SchemaError(f"schema {self.name!r}: {exc}") from None
        for group, members in self.groups.items():
            if not isinstance(members, list) or not members:
                raise SchemaError(f"schema {self.name!r}: group {group!r} must be a non-empty list of head names")
            unknown = [m for m in members if m not in names]
            if unknown:
                raise SchemaError(f"schema {self.name!r}: group {group!r} names unknown heads {unknown}")

    @property
    def num_outputs(self) -> int:
        return sum(h.size for h in self.heads)

    @property
    def slices(self) -> list[slice]:
        """The columns of each head in the concatenated attribute output."""
        return head_slices(self.heads)

    @property
    def fields(self) -> tuple[str, ...]:
        """The .mat fields the heads read, in head order."""
        return tuple(f for head in self.heads for f in head.fields)

    def head(self, name: str) -> Head:
        for head in self.heads:
            if head.name == name:
                return head
        raise KeyError(f"schema {self.name!r} has no head {name!r}; heads: {[h.name for h in self.heads]}")

    def encode(self, raw: Mapping[str, int]) -> tuple[int, ...]:
        """Raw .mat values of one identity -> one target per head (-1 unknown)."""
        return tuple(head.encode(raw) for head in self.heads)

    def ambiguous_heads(self, raw: Mapping[str, int]) -> list[str]:
        return [head.name for head in self.heads if head.is_ambiguous(raw)]

    def encode_labels(self, labels: Mapping[str, str]) -> tuple[int, ...]:
        """Label strings by head name (CSV) -> targets; a head left out or empty is unknown."""
        return tuple(head.index(labels.get(head.name, "")) for head in self.heads)

    def decode_label(self, head: str | Head, target: int) -> str | None:
        """The label string of a target; None for unknown (-1)."""
        head = self.head(head) if isinstance(head, str) else head
        if target == -1:
            return None
        if not 0 <= target < len(head.labels):
            raise AttributeValueError(f"head {head.name!r}: target {target} outside 0..{len(head.labels) - 1}")
        return head.labels[target]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "heads": [
                {
                    "name": h.name,
                    "type": h.type,
                    "labels": list(h.labels),
                    **({"source": copy.deepcopy(h.source)} if h.source else {}),
                }
                for h in self.heads
            ],
            "groups": {g: list(m) for g, m in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttributeSchema:
        if not isinstance(data, Mapping):
            raise SchemaError(f"a schema is a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"name", "heads", "groups"}
        if unknown:
            raise SchemaError(f"schema: unknown keys {sorted(unknown)}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError("schema: 'name' must be a non-empty string")
        raw_heads = data.get("heads")
        if not isinstance(raw_heads, list):
            raise SchemaError(f"schema {name!r}: 'heads' must be a list")
        heads = []
        for i, raw in enumerate(raw_heads):
            if not isinstance(raw, Mapping):
                raise SchemaError(f"schema {name!r}: head {i} is not an object")
            extra = set(raw) - {"name", "type", "labels", "source"}
            if extra:
                raise SchemaError(f"schema {name!r}: head {i} ({raw.get('name')!r}) has unknown keys {sorted(extra)}")
            missing = [k for k in ("name", "type", "labels") if k not in raw]
            if missing:
                raise SchemaError(f"schema {name!r}: head {i} ({raw.get('name')!r}) lacks {missing}")
            labels = raw["labels"]
            if not isinstance(labels, list):
                raise SchemaError(f"schema {name!r}: head {raw['name']!r}: labels must be a list")
            heads.append(Head(raw["name"], raw["type"], tuple(labels), copy.deepcopy(dict(raw.get("source") or {}))))
        groups = data.get("groups", {})
        if not isinstance(groups, Mapping):
            raise SchemaError(f"schema {name!r}: 'groups' must be an object")
        return cls(name, tuple(heads), {str(g): list(m) if isinstance(m, list) else m for g, m in groups.items()})

    @classmethod
    def load(cls, path: Path | str) -> AttributeSchema:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SchemaError(f"{path}: schema file not found") from None
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None

    @classmethod
    def builtin(cls, name: str) -> AttributeSchema:
        """The schema shipped for a dataset: "market1501" or "dukemtmc"."""
        if name not in BUILTIN:
            raise SchemaError(f"no built-in schema {name!r}; choose one of {sorted(BUILTIN)}")
        return cls.load(SCHEMA_DIR / BUILTIN[name])
