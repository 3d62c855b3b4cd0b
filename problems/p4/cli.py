"""P4: targeted adversarial examples in 8-bit pixel space, and how robust they are to simple transforms.

    python problems/p4_adversarial.py [--image PATH --target ID_OR_NAME]... [--eps E] [--eot]
                                      [--data-dir D] [--out DIR] [--seed S]
    python -m problems.p4 ...          (the same)

X is the model's preprocessed input (resize + centre crop) quantised to 8 bits; the attack works on pixel
values with the normalisation inside the model, so the eps ball (E in 0-255 units, default 1) is a ball of
integer pixel values and ``DIR/<stem>_adv.png`` (at the model's input size, classified without resizing
again) is exactly the image that was attacked.

Update rules (``--method``):
  * ``prob``  -- the assignment's: X' <- X' + lambda * dP(y_fool|X')/dX', then clip to [X - eps, X + eps]
                 and [0, 255]. With ``--lam auto`` (default) lambda is set each step so that the largest pixel
                 change is ``--step`` (P(y_fool) starts near 1e-6, so a fixed lambda either does nothing for
                 hundreds of steps or overshoots); a number uses that fixed lambda (pixels per unit gradient).
  * ``ifgsm`` -- (default) the sign-of-gradient step on log P(y_fool): X' <- X' + step * sign(v), where v is
                 the gradient, smoothed with momentum (``--momentum``, 0 gives plain I-FGSM).
Both take the gradient at the 8-bit rounding of X' (straight-through), so every step's forward pass scores
exactly the image that would be saved; the attack stops as soon as that image has the target as top-1 with
P >= ``--confidence`` (0.9).

Part 2 flips, crops (~80 % of the area kept, centre), rotates (30 degrees) and greys each saved adversarial
image and tables the target's probability and the top-1 after each. ``--eot`` also runs expectation over
transformation (the gradient averaged over random flips, crops, rotations and greyscale) at the smallest
eps in {2, 4, 8, 16} for which the target survives all four transforms (``DIR/results_eot.json``).
"""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from problems.common.cli import (UserError, add_common_args, positive_float, positive_int, thread_count,
                                 unit_interval)
from problems.p4.result import results_markdown
from problems.p4.run import Settings, parse_eps, run
from scratchnet.io import write_text


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--image", action="append", type=Path, default=None,
                    help="image to attack (repeat, each with its --target); default: the four-image demo")
    ap.add_argument("--target", action="append", default=None,
                    help="target class id (0-999) or exact ImageNet class name, one per --image")
    ap.add_argument("--eps", default="1", help="L-inf budget in 0-255 pixel units (default 1)")
    ap.add_argument("--method", choices=["ifgsm", "prob"], default="ifgsm",
                    help="ifgsm: sign step on log P (default); prob: the assignment's lambda * dP/dX step")
    ap.add_argument("--step", type=positive_float, default=None,
                    help="step size in pixel units (default: eps/4 in the plain attack, eps/8 in the EOT attack)")
    ap.add_argument("--momentum", type=unit_interval, default=0.5,
                    help="ifgsm: gradient momentum in [0, 1] (default 0.5; 0: plain I-FGSM)")
    ap.add_argument("--lam", default="auto", help="prob method: 'auto' (default) or a fixed lambda > 0")
    ap.add_argument("--confidence", type=float, default=0.9,
                    help="stop when the target is top-1 with at least this probability, in (0, 1) (default 0.9)")
    ap.add_argument("--max-steps", type=positive_int, default=200, help="steps per plain attack (default 200)")
    ap.add_argument("--eot", action="store_true", help="also run the expectation-over-transformation attack")
    ap.add_argument("--eot-samples", type=positive_int, default=4, help="random views per EOT step (default 4)")
    ap.add_argument("--eot-steps", type=positive_int, default=100, help="max steps per EOT attempt (default 100)")
    ap.add_argument("--model", default="tf_efficientnet_lite0",
                    help="ImageNet classifier (default tf_efficientnet_lite0, offline; others need their weights)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--threads", type=thread_count, default=None, help="torch CPU threads (default: torch's)")
    add_common_args(ap, "p4")
    return ap.parse_args(argv)


def settings(args) -> Settings:
    """The checked settings of parsed arguments; UserError names a flag that cannot work."""
    eps = parse_eps(args.eps)
    lam = args.lam
    if lam != "auto":
        try:
            lam = float(lam)
        except ValueError:
            raise UserError(f"--lam must be 'auto' or a number > 0, got {lam!r}") from None
        if not (lam > 0 and math.isfinite(lam)):
            raise UserError(f"--lam must be 'auto' or a finite number > 0, got {lam}")
    if args.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", args.device):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    return Settings(eps=eps, method=args.method, step=args.step, momentum=args.momentum, lam=lam,
                    confidence=args.confidence, max_steps=args.max_steps, eot=args.eot,
                    eot_samples=args.eot_samples, eot_steps=args.eot_steps, model=args.model,
                    device=args.device, threads=args.threads, seed=args.seed, data_dir=args.data_dir)


def main(argv=None):
    args = parse_args(argv)
    s = settings(args)
    import matplotlib
    matplotlib.use("Agg")
    from problems.p4.figures import attack_figure, robustness_figure
    out = args.out

    def write_plain(result, rows):
        attack_figure(rows, out / "attack.png", s.eps)
        robustness_figure(rows, out / "robustness.png",
                          f"plain attack (eps {s.eps:g}/255) under transforms; green: target kept")
        result.write(out / "results.json")
        write_text(out / "results.md", results_markdown(result))
        print(f"wrote {out / 'results.json'}, attack.png, robustness.png")

    outcome = run(s, out, args.image, args.target, on_plain=write_plain)
    if outcome.eot is not None:
        eot, rows = outcome.eot, outcome.eot_rows
        attack_figure(rows, out / "attack_eot.png", max(e.eps for e in eot.images))
        robustness_figure(rows, out / "robustness_eot.png", "EOT attack under the same transforms; green: target kept")
        eot.write(out / "results_eot.json")
        write_text(out / "results.md", results_markdown(outcome.plain, eot))
        print(f"wrote {out / 'results_eot.json'}, attack_eot.png, robustness_eot.png")
    return 0
