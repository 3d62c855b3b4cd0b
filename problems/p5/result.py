"""P5's result (results/p5/results.json) as typed dataclasses, and the text the report makes from it.

Field names are the JSON keys the script has always written. The learning fields appear only with --learn;
`to_json` leaves them out otherwise (and a learning run's `n_states`/`min_margin` unless it was perfect),
so results files keep their shape.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from problems.common.fmt import fmt_g, fmt_int, fmt_pct, fmt_vec, plural
from problems.common.result import Result

WEIGHT_KEYS = ("U", "W", "b_h", "v", "b_y", "h_0")
LEARN_FIELDS = ("seeds", "perfect_seeds", "success_rate", "learn_method", "learn_runs", "learned_weights",
                "learned")
PERFECT_ONLY = ("n_states", "min_margin")      # a learning run has these only when it is a perfect adder

DOC = Path(__file__).resolve().parents[2] / "docs" / "p5_rnn_adder.md"
DOC_STOP = "## Tests on top of the proof"      # the derivation ends here; later parts quote observed numbers


@dataclass
class Weights:
    """The cell h_t = step(U x_t + W h_{t-1} + b_h), y_t = step(v . h_t + b_y), from h_0 (2 inputs, 3 units)."""
    U: list[list[float]]
    W: list[list[float]]
    b_h: list[float]
    v: list[float]
    b_y: float
    h_0: list[float]


@dataclass
class Step:
    """One row of a step table: time t, input bits x_t, hidden state h_t, output bit y_t."""
    t: int
    x_t: list[int]
    h_t: list[int]
    y_t: int


@dataclass
class Example:
    """The assignment's example (binary strings, most significant bit first; bit lists least significant first)."""
    a: str
    b: str
    sum: str
    correct: bool
    input_1: list[int]
    input_2: list[int]
    output: list[int]
    steps: list[Step]


@dataclass
class Addition:
    """One pair from the command line and the network's sum."""
    a: int
    b: int
    sum: int
    correct: bool
    a_bits: str
    b_bits: str
    sum_bits: str


@dataclass
class RandomCheck:
    """Random `bits`-bit pairs checked against Python's integer addition."""
    bits: int
    pairs_checked: int
    errors: int


@dataclass
class LearnRun:
    """One training seed, checked with the true step (exhaustive check and all-lengths proof)."""
    seed: int
    steps_run: int
    final_loss: float
    errors_exhaustive: int
    pairs_checked: int
    proof_all_lengths: bool
    perfect: bool
    proof_reason: str = ""
    weights: Weights | None = None
    n_states: int | None = None
    min_margin: float | None = None


@dataclass
class Learned:
    """The perfect learned net with the largest smallest |pre-activation|; states: reachable state -> carry."""
    seed: int
    weights: Weights
    min_margin: float
    states: dict[str, int]


@dataclass(kw_only=True)
class P5Result(Result):
    """The hand-set adder's checks (exhaustive below 2^verified_bits, random long pairs, the all-lengths
    proof) and, with --learn, the learning runs. verify_seconds: wall time of the exhaustive check, s."""
    command: str
    weights: Weights
    example: Example
    additions: list[Addition]
    verified_bits: int
    pairs_checked: int
    errors: int
    first_error: tuple[int, int] | None
    verify_seconds: float
    random_checks: list[RandomCheck]
    proof_all_lengths: bool
    proof_reason: str
    proof_states: dict[str, int]          # reachable hidden state "[h1, h2, h3]" -> its carry
    min_margin: float | None              # smallest |pre-activation| when the proof holds
    figures: dict[str, str]                # none drawn; kept for the results-folder convention
    seeds: int | None = None
    perfect_seeds: int | None = None
    success_rate: float | None = None
    learn_method: str | None = None
    learn_runs: list[LearnRun] | None = None
    learned_weights: Weights | None = None
    learned: Learned | None = None
    discussion: str

    def to_json(self) -> dict:
        obj = super().to_json()
        if self.learn_runs is None:
            for k in LEARN_FIELDS:
                del obj[k]
        else:
            for row in obj["learn_runs"]:
                for k in PERFECT_ONLY:
                    if row[k] is None:
                        del row[k]
        return obj

    # --------------------------------------------------------------------------------- derived text
    def random_errors(self) -> int:
        return sum(r.errors for r in self.random_checks)

    def checked_text(self) -> str:
        """What the checks contain, count by count: 'all 1,048,576 pairs of 10-bit numbers plus 200 random
        64-bit and 200 random 200-bit pairs' (never one total, which would mix the two kinds)."""
        text = f"all {fmt_int(self.pairs_checked)} pairs of {self.verified_bits}-bit numbers"
        if self.random_checks:
            text += " plus " + _and([f"{fmt_int(r.pairs_checked)} random {r.bits}-bit" for r in self.random_checks]) \
                + " pairs"
        return text

    def summary(self) -> str:
        """The discussion the script writes (and the report shows): the hand-set checks, then the learning outcome."""
        ok = self.proof_all_lengths
        randoms = _and([f"{fmt_int(r.pairs_checked)} random {r.bits}-bit" for r in self.random_checks]) \
            if self.random_checks else ""
        text = (f"Hand-set weights: {fmt_int(self.errors)} errors on all {fmt_int(self.pairs_checked)} pairs of "
                f"{self.verified_bits}-bit numbers"
                + (f" and {fmt_int(self.random_errors())} on the {randoms} pairs" if randoms else "")
                + "; the reachable hidden states "
                f"{'are' if ok else 'are not'} a carry automaton, so the net "
                f"{'adds correctly at every length' if ok else 'is not proven for all lengths'}.")
        if self.learn_runs is not None:
            perfect = sum(r.perfect for r in self.learn_runs)
            text += (f" Learning ({self.learn_method}) found a perfect adder (exhaustive {self.verified_bits}-bit "
                     f"check and all-lengths proof) in {perfect} of {len(self.learn_runs)} seeds.")
        return text

    def verdict(self) -> str:
        """The hand-set network's checks in one sentence, each count with what it contains."""
        checks = [(f"all {fmt_int(self.pairs_checked)} pairs of {self.verified_bits}-bit numbers", self.errors)] + [
            (f"the {fmt_int(r.pairs_checked)} random {r.bits}-bit pairs", r.errors) for r in self.random_checks]
        if self.errors + self.random_errors() == 0:
            text = (f"The hand-set network adds {self.checked_text()} correctly (each sum compared with exact "
                    "integer addition)")
        else:
            text = "The hand-set network makes " + _and([f"{plural(e, 'error')} on {what}" for what, e in checks])
        if self.proof_all_lengths:
            text += ("; the reachable-state proof shows it adds correctly at every length (smallest "
                     f"|pre-activation| {fmt_g(self.min_margin)}).")
        else:
            text += f"; the all-lengths proof fails: {self.proof_reason or 'no reason given'}."
        return text

    def facts(self) -> dict:
        """The report's P5 text: verdict sentence, weights table rows, random checks, learning summary."""
        weights = [(k, fmt_vec(getattr(self.weights, k))) for k in WEIGHT_KEYS]
        learn = None
        if self.learn_runs is not None:
            best = self.learned
            lw = best.weights if best else self.learned_weights
            learn = {"runs": self.learn_runs, "sentence": learn_sentence(self), "failures": failure_sentence(self),
                     "loss_vs_errors": loss_vs_errors_sentence(self),
                     "weights": [(k, fmt_vec(getattr(self.weights, k)), fmt_vec(getattr(lw, k))) for k in WEIGHT_KEYS]
                     if lw else [],
                     "seed": best.seed if best else None, "margin": best.min_margin if best else None,
                     "states": best.states if best else None}
        return {"verdict": self.verdict(), "weights": weights, "randoms": self.random_checks, "learn": learn,
                "discussion": self.summary()}

    def headline(self) -> str:
        """The report's one-line P5 summary on the cover page."""
        text = (f"hand-set adder: {fmt_int(self.errors)} errors on {fmt_int(self.pairs_checked)} pairs below "
                f"2^{self.verified_bits}, all-lengths proof {'holds' if self.proof_all_lengths else 'does not hold'}")
        if self.learn_runs is not None:
            text += (f"; learned: {sum(r.perfect for r in self.learn_runs)} of {len(self.learn_runs)} seeds "
                     "perfect")
        return text


# The derivation doc points developers at the code and tests that check each step; the report states the
# checks in words (the code itself is in the report's code excerpts). pattern -> replacement, in this order.
CODE_POINTERS = [
    (r"\s*\(`[^`]*[/:.][^`]*`\)", ""),                                  # "(`problems/p5/adder.py::f`)"
    (r"\bby\s+`[^`]+`\s+(over)", r"\1"),                                 # "checked by `test` over ..."
    (r"\band by\s+`[^`]+`\s+(over)", r"and \1"),
    (r"`tests/[^`]+`\s+checks", "a test checks"),                        # "`tests/x.py::t` checks ..."
]


def derivation_markdown(for_report: bool = True) -> str | None:
    """The derivation part of docs/p5_rnn_adder.md (its title dropped, stopping before observed results);
    for_report: with the pointers to code files and tests put in words (CODE_POINTERS)."""
    if not DOC.is_file():
        return None
    text = DOC.read_text().split(DOC_STOP)[0]
    text = "\n".join(text.splitlines()[1:]) if text.startswith("# ") else text
    if for_report:
        for pattern, repl in CODE_POINTERS:
            text = re.sub(pattern, repl, text)
    return text


# ------------------------------------------------------------------------------------------- learning text
LOW_LOSS = 0.01     # a final training loss below this is "near zero" (it prints as 0.00xx)
FAR_OFF = 0.9       # a failed run with at least this share of its exhaustive-check sums wrong "stays far off"


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _span(values, fmt=str) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}\u2013{fmt(hi)}"


def _seeds(runs) -> str:
    """'seed 6' or 'seeds 0, 2\u20134, 7' (consecutive seeds as ranges)."""
    seeds = sorted(r.seed for r in runs)
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j == i else (f"{seeds[i]}, {seeds[j]}" if j == i + 1 else
                                                    f"{seeds[i]}\u2013{seeds[j]}"))
        i = j + 1
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(parts)


def _loss(x) -> str:
    return f"{x:.4f}"


def _share(r) -> str:
    return fmt_pct(r.errors_exhaustive / r.pairs_checked, 2) if r.pairs_checked else "\u2014"


def learn_sentence(d: P5Result) -> str:
    """How many seeds gave a perfect adder, which, and after how many training steps."""
    runs = d.learn_runs or []
    perfect = [r for r in runs if r.perfect]
    text = (f"Learning ({d.learn_method or 'surrogate'} surrogate) from random initialisation gives a perfect adder "
            f"(0 errors on all {fmt_int(d.pairs_checked)} pairs of {d.verified_bits}-bit numbers and the all-lengths "
            f"proof holds) for {len(perfect)} of {len(runs)} seeds ({fmt_pct(len(perfect) / max(len(runs), 1), 2)})")
    if len(perfect) == 1:
        text += f": {_seeds(perfect)}, after {fmt_int(perfect[0].steps_run)} training steps"
    elif 1 < len(perfect) <= 4:
        text += (": seeds " + _and([str(r.seed) for r in perfect]) + ", after " +
                 _and([fmt_int(r.steps_run) for r in perfect]) +
                 " training steps respectively")
    elif perfect:
        steps = sorted(r.steps_run for r in perfect)
        text += (f" ({_seeds(perfect)}), after a median of {fmt_int(steps[len(steps) // 2])} training steps "
                 f"({_span(steps, fmt_int)})")
    return text + "."


def failure_kinds(d: P5Result) -> list[tuple[str, list]]:
    """The failed runs sorted into kinds, each [(kind, runs)] in this order: exact on the exhaustive check but not
    proven ('exact'), near-zero training loss yet errors ('low_loss'), far off ('far'), runs that share one
    error count ('same'; one entry per count), and the rest ('other')."""
    failed = [r for r in d.learn_runs or [] if not r.perfect]
    kinds = {"exact": [], "low_loss": [], "far": [], "rest": []}
    for r in failed:
        if r.errors_exhaustive == 0:
            kinds["exact"].append(r)
        elif r.final_loss < LOW_LOSS:
            kinds["low_loss"].append(r)
        elif r.pairs_checked and r.errors_exhaustive / r.pairs_checked >= FAR_OFF:
            kinds["far"].append(r)
        else:
            kinds["rest"].append(r)
    by_count: dict[int, list] = {}
    for r in kinds["rest"]:
        by_count.setdefault(r.errors_exhaustive, []).append(r)
    same = sorted((rs for rs in by_count.values() if len(rs) > 1), key=lambda rs: (-len(rs), rs[0].seed))
    other = [r for rs in by_count.values() if len(rs) == 1 for r in rs]
    return ([("exact", kinds["exact"])] if kinds["exact"] else []) + [("same", rs) for rs in same] + \
        [(k, kinds[k]) for k in ("low_loss", "far") if kinds[k]] + ([("other", other)] if other else [])


def failure_sentence(d: P5Result) -> str | None:
    """The failed runs in one sentence: how many, how long they trained, and their kinds."""
    failed = [r for r in d.learn_runs or [] if not r.perfect]
    if not failed:
        return None
    n = d.pairs_checked
    counts = {}
    pieces = []
    for kind, rs in failure_kinds(d):
        who = _seeds(rs) if len(rs) == 1 else f"{len(rs)} ({_seeds(rs)})"
        losses = _span([r.final_loss for r in rs], _loss)
        if kind == "exact":
            pieces.append(f"{who} {'is' if len(rs) == 1 else 'are'} exact on all {fmt_int(n)} pairs but fail"
                          f"{'s' if len(rs) == 1 else ''} the all-lengths proof")
        elif kind == "same":
            e = rs[0].errors_exhaustive
            counts[e] = len(rs)
            pieces.append(f"{who} end with the same number of errors, {fmt_int(e)} of {fmt_int(n)} "
                          f"({_share(rs[0])}), at final loss {losses}")
        elif kind == "far":
            pieces.append(f"{who} stay{'s' if len(rs) == 1 else ''} far off, with "
                          f"{_span([r.errors_exhaustive / r.pairs_checked for r in rs], lambda x: fmt_pct(x, 2))} of "
                          f"the sums wrong (final loss {losses})")
        elif kind == "low_loss":
            piece = (f"{who} end{'s' if len(rs) == 1 else ''} with a near-zero training loss ({losses}) and still "
                     f"{_span([r.errors_exhaustive for r in rs], fmt_int)} errors")
            pieces.append(piece)
        else:
            pieces.append(f"{who} end{'s' if len(rs) == 1 else ''} with "
                          f"{_span([r.errors_exhaustive for r in rs], fmt_int)} errors (final loss {losses})")
    # a near-zero-loss run whose error count is that of a group: say so (same count, different story)
    for i, (kind, rs) in enumerate(failure_kinds(d)):
        if kind == "low_loss" and len({r.errors_exhaustive for r in rs}) == 1 and rs[0].errors_exhaustive in counts:
            pieces[i] += " (the same count as the " + fmt_int(counts[rs[0].errors_exhaustive]) + " above)"
    steps = [r.steps_run for r in failed]
    return (f"The {'failed run' if len(failed) == 1 else plural(len(failed), 'failed run')} trained for "
            f"{_span(steps, fmt_int)} steps"
            f"{' each' if len(failed) > 1 and min(steps) == max(steps) else ''}: " + "; ".join(pieces) + ".")


def train_defaults() -> dict:
    """What every learning run of problems/p5 trains with (adder.train_adder's defaults, which run.py does not
    change): the sum width 'bits' of its training batches and the final sigmoid steepness 'beta_end'."""
    import inspect

    from problems.p5 import adder
    params = inspect.signature(adder.train_adder).parameters
    return {"bits": int(params["bits"].default), "beta_end": float(params["beta_end"].default)}


def relaxed_vs_hard(w: Weights, beta: float, bits: int) -> dict:
    """The same weights run on every pair of `bits`-bit numbers twice: with each step replaced by the sigmoid
    s(beta a) that training used (an output bit is 1 when its pre-activation is > 0) and with the true step.
    -> {'pairs', 'relaxed' and 'hard': share of sums exactly right, 'intermediate': share of the relaxed network's
    hidden values between 0.05 and 0.95}."""
    U, W, b, v = (np.asarray(x, dtype=np.float64) for x in (w.U, w.W, w.b_h, w.v))
    n = 1 << bits
    a, c = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    shifts = np.arange(bits + 1)
    x = np.stack([(a[:, None] >> shifts) & 1, (c[:, None] >> shifts) & 1], axis=-1).astype(np.float64)
    target = ((a + c)[:, None] >> shifts) & 1
    out = {"pairs": n * n}
    for mode in ("relaxed", "hard"):
        h = np.tile(np.asarray(w.h_0, dtype=np.float64), (n * n, 1))
        ys, mid = [], []
        for t in range(bits + 1):
            pre = x[:, t] @ U.T + h @ W.T + b
            if mode == "relaxed":
                h = 0.5 * (1 + np.tanh(0.5 * beta * pre))            # = sigmoid(beta * pre), without overflow
                mid.append(float(((h > 0.05) & (h < 0.95)).mean()))
            else:
                h = (pre > 0).astype(np.float64)
            ys.append((h @ v + w.b_y > 0).astype(np.int64))
        out[mode] = float((np.stack(ys, axis=1) == target).all(axis=1).mean())
        if mode == "relaxed":
            out["intermediate"] = float(np.mean(mid))
    return out


def loss_vs_errors_sentence(d: P5Result) -> str | None:
    """Why the training loss and the error count can disagree, from the runs: the loss is measured on a relaxed
    (or straight-through) network's last training batch, the errors on the hard network over every pair."""
    runs = d.learn_runs or []
    if not runs:
        return None
    n = f"all {fmt_int(d.pairs_checked)} pairs of {d.verified_bits}-bit numbers"
    if d.learn_method != "sigmoid":
        return (f"The training loss is the squared error of the hard network's output bits on its last training "
                f"batch of short random additions, the errors are counted on {n}, so a small loss shows the "
                "network right on that batch only.")
    text = (f"The training loss and the errors measure different networks: the loss is the cross-entropy of the "
            f"sigmoid-relaxed network s(\u03b2a) on its last training batch, the errors are counted with the hard "
            f"threshold on {n}")
    low = sorted((r for r in runs if not r.perfect and r.errors_exhaustive and r.final_loss < LOW_LOSS),
                 key=lambda r: r.final_loss)
    if low:
        r = low[0]
        text += (f"; so {_seeds([r])} ends with loss {_loss(r.final_loss)} and still "
                 f"{fmt_int(r.errors_exhaustive)} errors ({_share(r)} of the sums)")
        cmp = relaxed_vs_hard(r.weights, (t := train_defaults())["beta_end"], t["bits"]) if r.weights else None
        if cmp and cmp["relaxed"] > cmp["hard"]:
            text += (f": with the sigmoid at its final steepness (\u03b2 = {t['beta_end']:g}) its weights add "
                     f"{fmt_pct(cmp['relaxed'], 2)} of all {fmt_int(cmp['pairs'])} pairs of {t['bits']}-bit numbers "
                     f"(the width it trained on) correctly, with the step {fmt_pct(cmp['hard'], 2)}; "
                     f"{fmt_pct(cmp['intermediate'], 2)} of the relaxed network's hidden values lie between 0.05 and "
                     "0.95, intermediate values that it passes on to the next step and that the step function "
                     "rounds to 0 or 1")
        else:
            text += (", because a small loss of the relaxed network on one batch says little about the "
                     "thresholded network on every pair")
        return text + "."
    perfect = [r.final_loss for r in runs if r.perfect]
    failed = [r.final_loss for r in runs if not r.perfect]
    if perfect and failed:
        sep = max(perfect) < min(failed)
        text += (f"; here every perfect run ends with a lower loss ({_span(perfect, _loss)}) than every failed one "
                 f"({_span(failed, _loss)})" if sep else
                 f"; here the final loss does not separate perfect runs ({_span(perfect, _loss)}) from failed ones "
                 f"({_span(failed, _loss)})")
    return text + "."
