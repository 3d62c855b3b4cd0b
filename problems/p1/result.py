"""P1's result (results/p1/results.json) as typed dataclasses, and the text made from it: the discussion
of each depth, results.md and the report's sentences. Field names are the JSON keys the script writes."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from problems.common.pretrained import ModelInfo, Preprocessing
from problems.common.fmt import DASH, fmt_f
from problems.common.result import Result


DISCUSSION = {
    "early": ("Early maps ({layer}: {c} channels at {h}x{w}, right after the stem convolution) are at "
              "half the input resolution and still look like the photo: each channel is a small local "
              "filter, so the strongest ones respond to edges at one orientation, to bright or dark "
              "regions and to colour contrasts (e.g. the red/green/yellow pepper skins against each other), "
              "and the outlines of the peppers are sharp."),
    "middle": ("Middle maps ({layer}: {c} channels at {h}x{w}) have a receptive field of tens of pixels; "
               "they no longer follow single edges but fire on textures and parts: glossy highlights, "
               "curved skin surfaces, stems, the boundaries between whole peppers. Blobs replace lines, and "
               "different channels cover different regions of the image."),
    "late": ("Late maps ({layer}: {c} channels at {h}x{w}, just before global pooling and the classifier) "
             "are coarse: each cell sees most of the image, so a map only says roughly where a high-level "
             "pattern (something pepper-like, a shiny vegetable surface, a market-stall texture) is, not "
             "what it looks like. They are hard to interpret by eye because each channel is one of "
             "{c} abstract directions that the classifier combines linearly, the 7x7 grid hides any "
             "shape, and min-max normalisation exaggerates small differences; their meaning shows in "
             "what the classifier does with them (the top classes), not in the picture."),
}

SUMMARY = (
    "Going deeper, resolution falls (112 -> 14 -> 7 for EfficientNet-Lite0) while channels and "
    "receptive fields grow: maps move from image-like edge and colour detectors to texture/part "
    "detectors to coarse, abstract class evidence. Maps are read from forward hooks on the real "
    "activations of one ordinary forward pass of the whole network (batch norm and activations "
    "included), never by re-running only the convolutions. For EfficientNet the maps are activated "
    "layers (BatchNorm + ReLU6): the stem, the expansion inside the middle stage's last block and the "
    "1280-channel head before pooling; each map is min-max normalised on its own.")


@dataclass
class TopClass:
    rank: int              # 1 = most probable
    class_id: int          # ImageNet-1k index
    name: str
    prob: float            # softmax probability


@dataclass
class FeatureMap:
    """One channel shown in the figures."""
    depth: str             # early, middle or late
    layer: str             # the module whose output it is
    channel: int
    shape: tuple[int, int]  # (H, W) of the map
    mean_activation: float
    rule: str              # why this channel was chosen


@dataclass
class Layers:
    """The module read at each depth."""
    early: str
    middle: str
    late: str

    def items(self):
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass
class Discussion:
    """What the maps at each depth show, and what changes with depth."""
    early: str
    middle: str
    late: str
    summary: str

    def items(self):
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def depth_discussion(depth: str, layer: str, channels: int, h: int, w: int) -> str:
    """The discussion of one depth, with the layer's name and its map count and size filled in."""
    return DISCUSSION[depth].format(layer=layer, c=channels, h=h, w=w)


@dataclass(kw_only=True)
class P1Result(Result):
    """Top-k classes of one image and the feature maps chosen at three depths. image: the image file as
    portable_path writes it; image_size: (width, height) in pixels; seconds: wall time of the run.
    figures: role (early, middle, late, combined) -> PNG file name relative to results.json."""
    command: str
    seed: int
    model: ModelInfo
    preprocessing: Preprocessing
    image: str
    image_size: tuple[int, int]
    top: list[TopClass]
    feature_maps: list[FeatureMap]
    feature_map_rule: str
    layers: Layers
    figures: dict[str, str]
    discussion: Discussion
    seconds: float

    def channels(self, depth: str) -> list[FeatureMap]:
        """The maps shown at `depth`, strongest first."""
        return [m for m in self.feature_maps if m.depth == depth]

    def markdown(self) -> str:
        """results.md: the top-k table, the channels shown at each depth and the discussion."""
        md = [f"# P1: {self.model.name} on {Path(self.image).name}", "",
              f"Preprocessing: {self.preprocessing.text}", "",
              "| rank | class | id | probability |", "| --- | --- | --- | --- |"]
        md += [f"| {t.rank} | {t.name} | {t.class_id} | {t.prob:.3f} |" for t in self.top]
        md += ["", f"Feature maps: {self.feature_map_rule}.", ""]
        md += [f"- **{d}** ({layer}): channels {[m.channel for m in self.channels(d)]}. "
               f"{getattr(self.discussion, d)}" for d, layer in self.layers.items()]
        md += ["", self.discussion.summary, ""]
        return "\n".join(md)

    def facts(self) -> dict:
        """The report's P1 text: the top-k sentence, one row per depth, the discussion paragraphs."""
        top = self.top
        out = {"top": top, "sentence": None, "depths": []}
        if top:
            first = top[0]
            total = sum(t.prob for t in top)
            out["sentence"] = (f"{self.model.name} puts {first.name} (class {first.class_id}) first with "
                               f"probability {fmt_f(first.prob)}; the top {len(top)} classes together hold "
                               f"{fmt_f(total)} of the probability mass"
                               + (f", and the runner-up, {top[1].name}, gets {fmt_f(top[1].prob)}."
                                  if len(top) > 1 else "."))
        for depth, layer in self.layers.items():
            maps = self.channels(depth)
            out["depths"].append({"depth": depth, "layer": layer,
                                  "shape": "x".join(str(s) for s in maps[0].shape) if maps else DASH,
                                  "channels": ", ".join(str(m.channel) for m in maps) or DASH})
        out["discussion"] = self.discussion.items()
        return out

    def headline(self) -> str | None:
        """The report's one-line P1 summary on the cover page (None without a top class)."""
        if not self.top:
            return None
        return f"{self.model.name}: top-1 {self.top[0].name} (p = {fmt_f(self.top[0].prob)})"
