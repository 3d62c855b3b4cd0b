"""P1's result (results/p1/results.json) as typed dataclasses, and the text made from it: the discussion
of each depth, results.md and the report's sentences. Field names are the JSON keys the script writes.

All of P1's text is made here, from the result's numbers (:func:`discuss`): what each shown channel
responds to (measured: where its map is high, the image's colours there, its correlation with simple
image cues), what changes with depth and what makes the maps hard to read. Hand-written notes about
particular channels (NOTES) are keyed to the default image (its pixels' SHA-256) and model, and are used
only for a run on that image with that model and only for the channels they name; any other run gets the
rule-made text alone.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, fields
from pathlib import Path

from problems.common.pretrained import ModelInfo, Preprocessing
from problems.common.fmt import DASH, fmt_f, fmt_int, fmt_pct
from problems.common.result import Result

DEPTHS = ("early", "middle", "late")
TRACKS_CLOSELY, TRACKS = 0.8, 0.5        # |r| with a cue: "closely tracks", "partly tracks"; below: no single cue
PLATEAU = 0.1                            # a map is flat-topped when this share of its cells sits at its maximum

# cue -> (what a map with r > 0 follows, what one with r < 0 follows)
CUE_WORDS = {
    "brightness": ("brightness", "darkness"),
    "saturation": ("colour saturation", "greyness (low saturation)"),
    "red-green": ("red rather than green", "green rather than red"),
    "yellow-blue": ("yellow rather than blue", "blue rather than yellow"),
    "edges": ("edge strength", "flat, edge-free areas"),
    "x-edges": ("vertical edges with the darker side on the left", "vertical edges with the darker side on the right"),
    "y-edges": ("horizontal edges with the darker side above", "horizontal edges with the darker side below"),
}

# The default input and model, for the hand-written notes: SHA-256 of peppers.png's decoded 8-bit RGB
# pixels (image_sha256 below), and the model name.
PEPPERS_SHA256 = "2bffe4807fee3e80784c4eecbd3bf4b05d713fbb2a8ce7e66a5edac1ae99470d"
DEFAULT_MODEL = "tf_efficientnet_lite0"
# (model, image) -> {(layer, channel): what the map shows, read off that run's figures (maps and overlays)}
NOTES: dict = {(DEFAULT_MODEL, PEPPERS_SHA256): {
    ("bn1", 6): "A dark-region mask: at the ReLU6 ceiling of 6 over the purple cloth, the red peppers and the "
                "shadows between the peppers, and near zero on the bright parts: the yellow pepper, the pale "
                "yellow pepper in front, the garlic and the lit tops of the green peppers. It separates light "
                "from dark, not peppers from cloth.",
    ("bn1", 22): "An embossed-looking copy of the image: an almost flat level with a light rim on one side of "
                 "each outline and a dark rim on the other; the flat level is a little higher on dark areas.",
    ("bn1", 4): "A warm-colour map: high on the red peppers and the yellow pepper, low on the green peppers, "
                "the garlic and the purple cloth; the cleanest single-feature map of the figure.",
    ("bn1", 24): "An edge map: flat away from outlines, with a bright line along one side and a dark line along "
                 "the other side of near-vertical outlines (the sides of the garlic, the peppers and their stems).",
    ("bn1", 21): "An edge map for near-horizontal outlines: bright and dark lines along the tops and bottoms of "
                 "the peppers, and a faint striped texture on the cloth.",
    ("blocks.3.2.bn1", 108): "A pepper-pile map: at the ReLU6 ceiling over nearly the whole heap of peppers, "
                             "whatever their colour, and off on the purple cloth below it and, more weakly, on the "
                             "strip of cloth at the top. At 16 pixels per cell it outlines the heap, not single "
                             "peppers.",
    ("blocks.3.2.bn1", 312): "Spots along the top of the heap, where the garlic and the green peppers meet the "
                             "cloth, and a few on the left; off on most of the big red pepper on the right and on "
                             "the cloth below.",
    ("bn2", 518): "High on the group of red peppers on the left, on the bottom of the yellow pepper with the green "
                  "chilli below it and on a column at the left edge of the big red pepper; off on the cloth and "
                  "on the green peppers at the top.",
    ("bn2", 1003): "A band over the middle three of the seven rows of cells, across the whole width, where the red "
                   "and yellow peppers lie; off on the green peppers and cloth above and on the cloth below.",
    ("bn2", 620): "Strongest at the upper left, on the top of the green pepper there and the cloth above it; "
                  "off on the lower half of the image.",
    ("bn2", 196): "One small spot, about two cells, where the yellow pepper meets the big red pepper on the "
                  "right; near zero elsewhere.",
}}


@dataclass
class TopClass:
    rank: int              # 1 = most probable
    class_id: int          # ImageNet-1k index
    name: str
    prob: float            # softmax probability


@dataclass
class FeatureMap:
    """One channel shown in the figures, and what was measured on its map (feature_maps.describe_map).
    rank: by spatial mean among the layer's channels (1 = strongest); max_r: its largest |r| with the maps
    kept before it (None for the first); plateau: share of cells at the map's maximum; high_fraction: share
    of the input where the upsampled min-max map is >= 0.5; location: where that region lies ("mostly in
    the upper left", "in a band across the middle", ...); colours / low_colours: colour name -> share of the pixels inside / outside it; cues:
    Pearson r of the map with each image cue at the map's resolution."""
    depth: str             # early, middle or late
    layer: str             # the module whose output it is
    channel: int
    shape: tuple[int, int]  # (H, W) of the map
    mean_activation: float
    rule: str              # why this channel was chosen
    rank: int
    max_r: float | None
    filled: bool           # shown although it does not pass the cap: the layer had too few distinct maps
    max_activation: float
    plateau: float
    high_fraction: float
    location: str
    colours: dict[str, float]
    low_colours: dict[str, float]
    cues: dict[str, float]


@dataclass
class SkippedChannel:
    """A channel the rule passed over before its last kept one: a near-copy (|r| > the cap) of the kept
    channel `copies`, or a constant map (copies and r None)."""
    depth: str
    channel: int
    rank: int
    copies: int | None
    r: float | None


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
    """What the maps at each depth show, what changes with depth, and what makes them hard to read."""
    early: str
    middle: str
    late: str
    summary: str
    challenges: str

    def items(self):
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def rule_text(k: int, cap: float) -> str:
    """The channel rule, as results.json and the report state it."""
    return (f"greedy by mean activation with a correlation cap: the channels are taken in order of their "
            f"map's spatial mean activation, and one is kept only if its map's absolute Pearson correlation "
            f"(over the map's cells) with every map already kept is at most {fmt_g2(cap)}; near-duplicates and "
            f"constant maps are passed over, until {k} are kept (if a layer has fewer distinct maps, the "
            f"strongest passed-over ones fill the remaining places, and the text says so)")


def fmt_g2(x: float) -> str:
    return f"{x:g}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _pct0(x: float) -> str:
    return fmt_pct(x, 0)


def _r(x: float) -> str:
    return f"{x:+.2f}".replace("-", "\u2212")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def best_cue(m: FeatureMap) -> tuple[str, float] | None:
    """The image cue whose correlation with the map is largest in size: (cue, r), None without cues."""
    if not m.cues:
        return None
    name = max(m.cues, key=lambda k: abs(m.cues[k]))
    return name, m.cues[name]


def cue_clause(m: FeatureMap) -> str:
    """What the map follows among the simple image cues, with the correlation that says so."""
    best = best_cue(m)
    if best is None:
        return "no image cues were measured"
    name, r = best
    follows = CUE_WORDS.get(name, (name, "the opposite of " + name))[0 if r >= 0 else 1]
    if abs(r) >= TRACKS_CLOSELY:
        return f"it closely tracks {follows} (r = {_r(r)} with {name})"
    if abs(r) >= TRACKS:
        return f"it partly tracks {follows} (r = {_r(r)} with {name})"
    return f"no single simple cue explains it (the strongest, {name}, has r = {_r(r)})"


def _colour_list(shares: dict, image: dict) -> str:
    top = list(shares.items())[:2]
    if not top:
        return ""
    here = _and([f"{_pct0(v)} {k}" for k, v in top])
    whole = _and([f"{_pct0(image.get(k, 0.0))}" for k, _ in top])
    return f"{here} pixels (the whole image: {whole})"


def rule_reading(m: FeatureMap, image_colours: dict) -> str:
    """The rule-made account of one map: where it is high, the image's colours there, and its best cue."""
    if m.high_fraction <= 0:
        return "the map is constant on this image, so it marks nothing; " + cue_clause(m)
    if m.high_fraction >= 0.5:
        share = "most of the image" if m.high_fraction >= 0.75 else "more than half of the image"
        where = f"high (at least half its range) over {share} ({_pct0(m.high_fraction)})"
        low = _colour_list(m.low_colours, image_colours)
        where += f" and low on a region of {low}" if low else ""
    else:
        where = f"high (at least half its range) over {_pct0(m.high_fraction)} of the image, {m.location}"
        here = _colour_list(m.colours, image_colours)
        where += f"; that region is {here}" if here else ""
    return f"{where}; {cue_clause(m)}"


def short_reading(m: FeatureMap) -> str:
    """The measurements in brief, beside a hand-written note: high share and the strongest cue."""
    best = best_cue(m)
    text = f"high over {_pct0(m.high_fraction)} of the image"
    return text + (f"; strongest cue {best[0]}, r = {_r(best[1])}" if best else "")


def image_key(model: str, image_sha256: str) -> tuple[str, str]:
    return (model, image_sha256)


@dataclass(kw_only=True)
class P1Result(Result):
    """Top-k classes of one image and the feature maps chosen at three depths. image: the image file as
    portable_path writes it; image_size: (width, height) in pixels; image_sha256: SHA-256 of its decoded
    8-bit RGB pixels; image_colours: colour name -> share of the crop the network saw; layer_channels:
    depth -> the layer's channel count; correlation_cap: the channel rule's cap on |r|; skipped: the
    channels the rule passed over; seconds: wall time of the run. figures: role (early, middle, late,
    combined) -> PNG file name relative to results.json. discussion: the text :func:`discuss` makes from
    the rest (the report makes it again from the same numbers)."""
    command: str
    seed: int
    model: ModelInfo
    preprocessing: Preprocessing
    image: str
    image_size: tuple[int, int]
    image_sha256: str
    image_colours: dict[str, float]
    top: list[TopClass]
    feature_maps: list[FeatureMap]
    feature_map_rule: str
    correlation_cap: float
    skipped: list[SkippedChannel]
    layers: Layers
    layer_channels: dict[str, int]
    figures: dict[str, str]
    discussion: Discussion
    seconds: float

    def channels(self, depth: str) -> list[FeatureMap]:
        """The maps shown at `depth`, in the order the rule kept them (the first has the largest mean)."""
        return [m for m in self.feature_maps if m.depth == depth]

    def notes(self) -> dict:
        """The hand-written notes that apply to this run: {(layer, channel): text}; empty unless the image
        and the model are the default ones."""
        return NOTES.get(image_key(self.model.name, self.image_sha256), {})

    def cell_pixels(self, depth: str) -> int | None:
        """How many input pixels one cell of the map at `depth` spans along each side (None if not whole)."""
        maps = self.channels(depth)
        crop = self.preprocessing.center_crop
        if not maps or not maps[0].shape[0] or crop % maps[0].shape[0]:
            return None
        return crop // maps[0].shape[0]

    def markdown(self) -> str:
        """results.md: the top-k table, the channels shown at each depth and the discussion."""
        d = discuss(self)
        md = [f"# P1: {self.model.name} on {Path(self.image).name}", "",
              f"Preprocessing: {self.preprocessing.text}", "",
              "| rank | class | id | probability |", "| --- | --- | --- | --- |"]
        md += [f"| {t.rank} | {t.name} | {t.class_id} | {fmt_pct(t.prob, 2)} |" for t in self.top]
        md += ["", f"Feature maps: {self.feature_map_rule}.", ""]
        md += [f"- **{depth}** ({layer}): channels {[m.channel for m in self.channels(depth)]}. "
               f"{getattr(d, depth)}" for depth, layer in self.layers.items()]
        md += ["", d.summary, "", d.challenges, ""]
        return "\n".join(md)

    def facts(self) -> dict:
        """The report's P1 text: the top-k sentence, one row per depth, the discussion made from the numbers."""
        top = self.top
        out = {"top": [{"rank": t.rank, "name": t.name, "class_id": t.class_id, "prob": fmt_pct(t.prob, 2)}
                       for t in top], "sentence": None, "depths": []}
        if top:
            first = top[0]
            total = sum(t.prob for t in top)
            out["sentence"] = (f"{self.model.name} puts {first.name} (class {first.class_id}) first with "
                               f"probability {fmt_pct(first.prob, 2)}; the top {len(top)} classes together hold "
                               f"{fmt_pct(total, 2)} of the probability mass"
                               + (f", and the runner-up, {top[1].name}, gets {fmt_pct(top[1].prob, 2)}."
                                  if len(top) > 1 else "."))
        for depth, layer in self.layers.items():
            maps = self.channels(depth)
            out["depths"].append({"depth": depth, "layer": layer,
                                  "shape": "x".join(str(s) for s in maps[0].shape) if maps else DASH,
                                  "channels": ", ".join(str(m.channel) for m in maps) or DASH})
        out["overview"] = [{"depth": depth, "layer": layer,
                            "size": (f"{fmt_int(self.layer_channels.get(depth, 0))} x "
                                     + "x".join(str(s) for s in self.channels(depth)[0].shape)
                                     if self.channels(depth) else DASH),
                            "cell": (f"{self.cell_pixels(depth)}x{self.cell_pixels(depth)} px"
                                     if self.cell_pixels(depth) else DASH),
                            "channels": ", ".join(str(m.channel) for m in self.channels(depth)) or DASH,
                            "ranks": ", ".join(str(m.rank) for m in self.channels(depth)) or DASH,
                            "shown": ", ".join(f"{m.channel} ({m.rank})" for m in self.channels(depth)) or DASH,
                            "skipped": len([s for s in self.skipped if s.depth == depth])}
                           for depth, layer in self.layers.items()]
        out["per_depth"] = [depth_text(self, depth) for depth in DEPTHS]
        d = discuss(self)
        out["summary"], out["challenges"] = d.summary, challenges(self)
        out["weights"] = self.model.weights.split(" from ")[0]
        out["discussion"] = d.items()
        return out

    def headline(self) -> str | None:
        """The report's one-line P1 summary on the cover page (None without a top class)."""
        if not self.top:
            return None
        return f"{self.model.name}: top-1 {self.top[0].name} (p = {fmt_pct(self.top[0].prob, 2)})"


# ----------------------------------------------------------------------------------------- the text
def _skipped_sentence(r: P1Result, depth: str) -> str:
    """What the channel rule did at one depth: which channels it passed over, and any filled places."""
    skipped = [s for s in r.skipped if s.depth == depth]
    maps = r.channels(depth)
    filled = [m for m in maps if m.filled]
    if not maps:
        return ""
    if not skipped and not filled:
        return (f"The {len(maps)} channels with the largest mean activation were already distinct "
                f"(|r| at most {fmt_g2(r.correlation_cap)} between any two), so the rule passed over none.")
    copies = [s for s in skipped if s.copies is not None]
    constant = len(skipped) - len(copies)
    by_kept: dict[int, list[SkippedChannel]] = {}
    for s in copies:
        by_kept.setdefault(s.copies, []).append(s)
    examples = []
    for kept, group in list(by_kept.items())[:2]:
        named = group if len(group) <= 4 else group[:3]
        chans = (_and([str(s.channel) for s in named]) if len(named) == len(group)
                 else ", ".join(str(s.channel) for s in named) + f" and {len(group) - len(named)} more")
        rs = ", ".join(f"{s.r:.2f}" for s in named)
        examples.append(f"{chans} {'copies' if len(group) == 1 else 'copy'} channel {kept}, "
                        f"|r| = {rs}{', ...' if len(named) < len(group) else ''}")
    passed = []
    if copies:
        passed.append(f"{len(copies)} higher-ranked channel{'s' if len(copies) != 1 else ''} as near-duplicates "
                      f"of kept ones" + (f" ({'; '.join(examples)})" if examples else ""))
    if constant:
        passed.append(f"{constant} constant map{'s' if constant != 1 else ''}")
    text = f"To find distinct maps the rule passed over {_and(passed)}." if passed else ""
    if filled:
        text += (f" Only {len(maps) - len(filled)} of the layer's maps pass the cap; channel"
                 f"{'s' if len(filled) > 1 else ''} {_and([str(m.channel) for m in filled])} "
                 f"{'fill' if len(filled) > 1 else 'fills'} the remaining places although "
                 f"{'they are near-copies or constant' if len(filled) > 1 else 'it is a near-copy or constant'}.")
    return text.strip()


def depth_text(r: P1Result, depth: str) -> dict:
    """The discussion of one depth: an intro (layer, size, cell size, the rule's outcome) and one reading
    per shown channel (the hand-written note where one applies, then the rule-made measurements)."""
    maps = r.channels(depth)
    layer = getattr(r.layers, depth)
    if not maps:
        return {"depth": depth, "layer": layer, "intro": f"No maps were recorded at the {depth} layer.",
                "channels": []}
    h, w = maps[0].shape
    cell = r.cell_pixels(depth)
    c = r.layer_channels.get(depth)
    intro = (f"The {depth} layer ({layer}) has {fmt_int(c) if c else 'its'} channels of {h}x{w} cells"
             + (f"; one cell covers {cell}x{cell} pixels of the {r.preprocessing.center_crop}x"
                f"{r.preprocessing.center_crop} input" if cell else "") + ". " + _skipped_sentence(r, depth))
    notes = r.notes()
    rows = []
    for m in maps:
        measured = rule_reading(m, r.image_colours)
        note = notes.get((m.layer, m.channel))
        label = f"Channel {m.channel} ({ordinal(m.rank)} by mean activation, mean {fmt_f(m.mean_activation, 2)})"
        text = f"{note} Measured: {short_reading(m)}." if note else f"{measured}."
        rows.append({"channel": m.channel, "label": label, "text": text, "note": bool(note)})
    return {"depth": depth, "layer": layer, "intro": intro, "channels": rows}


def _trend(values: list[float]) -> str:
    if all(b < a for a, b in zip(values, values[1:])):
        return "falls"
    if all(b > a for a, b in zip(values, values[1:])):
        return "rises"
    return "does not change steadily"


def summary_text(r: P1Result) -> str:
    """What changes from the early to the late layer, from the numbers of this run."""
    depths = [d for d in DEPTHS if r.channels(d)]
    if len(depths) < 2:
        return "Fewer than two depths have maps, so nothing can be said about how they change with depth."
    sizes = [r.channels(d)[0].shape for d in depths]
    cells = [r.cell_pixels(d) for d in depths]
    chans = [r.layer_channels.get(d) for d in depths]
    s = (f"From the {depths[0]} to the {depths[-1]} layer the maps go from "
         + " to ".join(f"{h}x{w}" for h, w in sizes) + " cells"
         + (" (one cell spans " + ", ".join(str(c) for c in cells[:-1]) + f" and then {cells[-1]} input pixels a side)"
            if all(cells) else "")
         + (", while the number of channels goes from " + " to ".join(fmt_int(c) for c in chans)
            if all(chans) else "") + ". ")
    med = [statistics.median(abs(best_cue(m)[1]) for m in r.channels(d) if best_cue(m)) for d in depths
           if any(best_cue(m) for m in r.channels(d))]
    if len(med) == len(depths):
        trend = _trend(med)
        s += (f"The strongest single-cue correlation of the shown channels (median |r| over the channels of a "
              f"depth) is " + _and([f"{v:.2f} {d}" for v, d in zip(med, depths)]) + f": it {trend} with depth. ")
        first, rest = med[0], med[1:]
        if all(v < first for v in rest) and first >= TRACKS and all(v < TRACKS for v in rest):
            s += ("The early channels are colour, brightness and edge detectors that a single cue describes; "
                  "past the early layer no single cue describes a typical channel, which responds to a "
                  "combination of them over a larger region.")
        elif all(v < first for v in rest):
            s += ("Simple cues describe the early channels best; deeper ones follow them less closely, which fits "
                  "units whose cells see larger regions where several cues mix.")
        else:
            s += ("So on this image depth does not make the shown channels less like simple colour, brightness "
                  "or edge detectors: some deeper channel follows a single cue as closely as the early ones.")
    cover = [statistics.median(m.high_fraction for m in r.channels(d)) for d in depths]
    s += (" The share of the image where a shown map is high (median over its channels) is "
          + _and([f"{_pct0(v)} {d}" for v, d in zip(cover, depths)]) + ".")
    return s


def challenges(r: P1Result) -> list[tuple[str, str]]:
    """What makes the maps hard to interpret, as (topic, text), with this run's numbers where there are any."""
    parts = []
    depths = [d for d in DEPTHS if r.channels(d)]
    if depths:
        last = depths[-1]
        h, w = r.channels(last)[0].shape
        cell = r.cell_pixels(last)
        parts.append(("Resolution", f"the {last} maps have {h}x{w} = {h * w} cells"
                      + (f", each spanning {cell}x{cell} input pixels" if cell else "")
                      + ", so they say roughly where a pattern is but show no shape; the smooth blobs of the "
                        "overlays come from the bilinear upsampling, not from the network, and a correlation over "
                        f"{h * w} cells is a coarse measure."))
    deep = [m for d in depths[1:] for m in r.channels(d)]
    if deep:
        unexplained = [m for m in deep if best_cue(m) is None or abs(best_cue(m)[1]) < TRACKS]
        copies = [s for s in r.skipped if s.copies is not None and s.depth in depths[1:]]
        text = (f"{len(unexplained)} of the {len(deep)} channels shown past the {depths[0]} layer follow no "
                f"single simple cue (|r| below {TRACKS})")
        if copies:
            text += (f", and {len(copies)} higher-ranked channels of those layers were passed over as near-copies "
                     f"(|r| above {fmt_g2(r.correlation_cap)}) of shown ones")
        text += (". A channel is one direction in a space that the next layers, and at the end the classifier, "
                 "read together with many others, so it need not stand for one nameable feature, and one "
                 "feature can be spread over several channels.")
        parts.append(("Channels mix features", text))
    maps = r.feature_maps
    if maps:
        lo, hi = min(m.max_activation for m in maps), max(m.max_activation for m in maps)
        parts.append(("Normalisation", f"each map is min-max normalised on its own, so a colour compares places "
                      f"within one map, never two maps; the shown maps' maxima range from {fmt_f(lo, 2)} to "
                      f"{fmt_f(hi, 2)}, and a map with a small range looks as contrasted as one with a large range."))
        flat = [m for m in maps if m.plateau >= PLATEAU]
        if flat:
            worst = max(flat, key=lambda m: m.plateau)
            capped = r.model.name.startswith("tf_efficientnet_lite") and all(m.max_activation >= 5.999 for m in flat)
            parts.append(("Saturation", f"{len(flat)} of the {len(maps)} shown maps sit at their maximum on at "
                          f"least {_pct0(PLATEAU)} of their cells (channel {worst.channel}, {worst.depth}: "
                          f"{_pct0(worst.plateau)})" + (", the ceiling of 6 of the network's ReLU6 activations"
                                                       if capped else "")
                          + "; inside such a plateau the map cannot say which place drives the channel more."))
    parts.append(("One image", "the maps show what a channel does on this image only; what a channel detects in "
                  "general needs many images (for example the image patches that drive it hardest across a "
                  "data set)."))
    return parts


def challenges_text(r: P1Result) -> str:
    return " ".join(f"{topic}: {text}" for topic, text in challenges(r))


def discuss(r: P1Result) -> Discussion:
    """P1's whole discussion, made from the result's numbers (the one place its text is made)."""
    per = {}
    for depth in DEPTHS:
        t = depth_text(r, depth)
        per[depth] = " ".join([t["intro"]] + [f"{c['label']}: {c['text']}" for c in t["channels"]])
    return Discussion(**per, summary=summary_text(r), challenges=challenges_text(r))
