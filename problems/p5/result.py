"""P5's result (results/p5/results.json) as typed dataclasses, and the text the report makes from it.

Field names are the JSON keys the script has always written. The learning fields appear only with --learn;
`to_json` leaves them out otherwise (and a learning run's `n_states`/`min_margin` unless it was perfect),
so results files keep their shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from problems.common.fmt import fmt_g, fmt_int, fmt_pct, fmt_vec
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

    def summary(self) -> str:
        """The discussion the script writes: the hand-set checks, then the learning outcome."""
        ok = self.proof_all_lengths
        text = (f"Hand-set weights: {self.errors} errors on all {self.pairs_checked} pairs below "
                f"2^{self.verified_bits}, {self.random_errors()} errors on random 64/200-bit pairs; the "
                f"reachable hidden states {'are' if ok else 'are not'} a carry automaton, so the "
                f"net {'adds correctly at every length' if ok else 'is not proven for all lengths'}.")
        if self.learn_runs is not None:
            text += (f" Learning ({self.learn_method}) found a perfect adder (exhaustive {self.verified_bits}-bit "
                     f"check and all-lengths proof) in {self.perfect_seeds} of {self.seeds} seeds.")
        return text

    def facts(self) -> dict:
        """The report's P5 text: verdict sentence, weights table rows, random checks, learning summary."""
        errors = self.errors + self.random_errors()
        checked = self.pairs_checked + sum(r.pairs_checked for r in self.random_checks)
        if errors == 0:
            verdict = f"The hand-set network adds every one of the {fmt_int(checked)} tested pairs correctly"
        else:
            verdict = f"The hand-set network makes {fmt_int(errors)} errors on {fmt_int(checked)} tested pairs"
        if self.proof_all_lengths:
            verdict += (", and the reachable-state proof shows it adds correctly at every length "
                        f"(smallest |pre-activation| {fmt_g(self.min_margin)}).")
        else:
            verdict += f"; the all-lengths proof fails: {self.proof_reason or 'no reason given'}."
        weights = [(k, fmt_vec(getattr(self.weights, k))) for k in WEIGHT_KEYS]
        learn = None
        if self.learn_runs is not None:
            runs = self.learn_runs
            perfect = [r for r in runs if r.perfect]
            best = self.learned
            lw = best.weights if best else self.learned_weights
            sentence = (f"Learning ({self.learn_method or 'surrogate'}) from random initialisation found a perfect "
                        f"adder (exhaustive {self.verified_bits}-bit check and all-lengths proof) in "
                        f"{len(perfect)} of {len(runs)} seeds ({fmt_pct(self.success_rate, 0)})")
            if perfect:
                sentence += ": seeds " + ", ".join(str(r.seed) for r in perfect)
            learn = {"runs": runs, "sentence": sentence + ".",
                     "weights": [(k, fmt_vec(getattr(self.weights, k)), fmt_vec(getattr(lw, k))) for k in WEIGHT_KEYS]
                     if lw else [],
                     "seed": best.seed if best else None, "margin": best.min_margin if best else None,
                     "states": best.states if best else None}
        return {"verdict": verdict, "weights": weights, "randoms": self.random_checks, "learn": learn}

    def headline(self) -> str:
        """The report's one-line P5 summary on the cover page."""
        text = (f"hand-set adder: {fmt_int(self.errors)} errors on {fmt_int(self.pairs_checked)} pairs below "
                f"2^{self.verified_bits}, all-lengths proof {'holds' if self.proof_all_lengths else 'does not hold'}")
        if self.learn_runs is not None:
            text += (f"; learned: {sum(r.perfect for r in self.learn_runs)} of {len(self.learn_runs)} seeds "
                     "perfect")
        return text


def derivation_markdown() -> str | None:
    """The derivation part of docs/p5_rnn_adder.md (its title dropped, stopping before observed results)."""
    if not DOC.is_file():
        return None
    text = DOC.read_text().split(DOC_STOP)[0]
    return "\n".join(text.splitlines()[1:]) if text.startswith("# ") else text
