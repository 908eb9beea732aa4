"""The realism switches: one per factor, so that each can be ablated, and the held-out style families.

With every switch off the generator draws exactly what it drew before the switches existed (byte for byte
per seed): that classic style is the held-out style that training never sees. `heldout_style` swaps the
backgrounds, textures and palettes of the factors that are on for families reserved for a second proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Realism:
    """Which realism factors are on (all off: the classic generator, unchanged)."""

    bodies: bool = False  # articulated walkers: 3/4 and side views, gait phase, arm swing, hairstyles, build
    shades: bool = False  # real-world shades per colour label (navy and faded denim are "blue"), mostly dark
    fabric: bool = False  # cloth texture (knit, twill, heather...) and folds on the garments
    light: bool = False  # directional light: shading across the body, cast shadow, colour temperature
    camera: bool = False  # camera above head height looking down; 50-200 px people, blur, noise, JPEG 50-95
    backgrounds: bool = False  # cluttered scenes: pavement, asphalt, grass, walls, markings, poles, cars
    occluders: bool = False  # poles, bins, bollards, car bonnets and neighbouring people at the crop edge
    heldout_style: bool = False  # backgrounds/textures/palettes from the families reserved for the proxy

    @property
    def any(self) -> bool:
        """Whether anything differs from the classic generator."""
        return any(asdict(self).values())

    def enabled(self) -> dict[str, bool]:
        """The switches that are on (what synth.json records)."""
        return {k: v for k, v in asdict(self).items() if v}


FACTORS: tuple[str, ...] = tuple(f.name for f in fields(Realism) if f.name != "heldout_style")
OFF = Realism()
ALL = Realism(**dict.fromkeys(FACTORS, True))


def realism_options(value: Realism | Mapping[str, object] | str | bool | None) -> Realism:
    """A `Realism` from what a caller or a YAML config gives: an object, a dict of switches, "all", "none",
    a comma list of factor names, True/False or None (off). Unknown names or non-boolean values are refused."""
    if value is None or value is False:
        return OFF
    if value is True:
        return ALL
    if isinstance(value, Realism):
        return value
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",") if n.strip() and n.strip() != "none"]
        switches: dict[str, object] = dict.fromkeys(FACTORS if "all" in names else (), True)
        return realism_options(switches | dict.fromkeys((n for n in names if n != "all"), True))
    if not isinstance(value, Mapping):
        raise ValueError(f"realism must be a dict of switches, a name list, 'all' or 'none', got {value!r}")
    known = {f.name for f in fields(Realism)}
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        raise ValueError(f"unknown realism switch(es) {unknown}; known: {sorted(known)}")
    bad = {k: v for k, v in value.items() if not isinstance(v, bool)}
    if bad:
        raise ValueError(f"realism switches take true/false, got {bad}")
    out = Realism(**{str(k): bool(v) for k, v in value.items()})
    if out.heldout_style and not any(getattr(out, f) for f in FACTORS):
        raise ValueError(f"heldout_style needs at least one realism factor on ({', '.join(FACTORS)})")
    return out
