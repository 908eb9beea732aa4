"""Synthetic pedestrians written exactly in Market-1501's layout (`personid synth`); no torch.

No person data set can be downloaded where this project is built and tested, so tests, demos and the default
model all train on what this writes, read by the real loaders unchanged. Every Market attribute is drawn so
that it is visible, each identity has its own details so look-alikes differ, and each camera its own look.

Modules: `seeds` (one random stream per purpose), `identity` (attribute draws), `camera` (per-camera look),
`scene` (backgrounds), `figure` (drawing a person), `render` (one image), `layout` (Market folders and names),
`writer` (the data set, the .mat, synth.json), `crops`, `sheet` (contact sheet) and `cli`. Realism switches
(`realism`: each factor on or off, for ablations) add `realistic` (the pipeline), `looks`, `walker`, `hair`,
`fabric`, `lighting`, `optics`, `clutter` and `occluders`; all off is the classic style, byte for byte.
"""

from synth.crops import sample_crops
from synth.layout import NAME_RE
from synth.realism import Realism, realism_options
from synth.sheet import contact_sheet
from synth.writer import SplitSummary, SynthSummary, generate

__all__ = [
    "NAME_RE",
    "Realism",
    "SplitSummary",
    "SynthSummary",
    "contact_sheet",
    "generate",
    "realism_options",
    "sample_crops",
]
