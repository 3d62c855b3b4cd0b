"""P4 study: the assignment's update rule beside I-FGSM with momentum, and success against eps (plain and EOT).

    python problems/p4_study.py [--parts methods,plain,eot] [--eps E] [--plain-eps LIST] [--eot-eps LIST]
                                [--data-dir D] [--out DIR] [--seed S]
    python problems/p4_study.py --from-recorded recorded/p4_study.json [--parts plain] [--out DIR]

On the four demo images and targets of problems/p4_adversarial.py (the first --n-images of them):
  * methods -- each image attacked at --eps with both update rules, the assignment's X' <- X' + lambda
               dP(y_fool|X')/dX' (--method prob, lambda 'auto') and I-FGSM with momentum (--method ifgsm,
               the default), same eps ball, step bound eps/4 and step limit: steps, success, final P(target),
               seconds;
  * plain   -- the plain attack (I-FGSM with momentum) at every eps of --plain-eps;
  * eot     -- the EOT attack at every eps of --eot-eps, as --eot runs it but without stopping at the first eps
               that works;
each sweep point scored on the 8-bit image and after every transform of part 2 (flip, crop, rotation, grey).

--from-recorded JSON reads an earlier study.json (e.g. the committed recorded/p4_study.json), computes only
the --parts given (default: none), copies the other parts from the recording marked as recorded, and redraws
the figure. Writes DIR/study.json and DIR/study.png (default DIR: results/p4/).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from problems.common.cli import (UserError, add_common_args, command_line, portable_path, positive_int,
                                 thread_count, unit_interval)
from problems.common.result import read_result
from problems.p4.run import parse_eps
from problems.p4.study import EOT_EPS_GRID, PLAIN_EPS_GRID, StudySettings, check_compatible, merge, run_study
from problems.p4.study_result import PARTS, P4Study

FIGURE = "study.png"


def parse_args(argv=None) -> argparse.Namespace:
    plain, eot = (",".join(str(e) for e in g) for g in (PLAIN_EPS_GRID, EOT_EPS_GRID))
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--parts", default=None,
                    help=f"comma list of parts to compute, of {','.join(PARTS)}, or 'none' "
                         "(default: all; with --from-recorded: none)")
    ap.add_argument("--from-recorded", type=Path, default=None, metavar="JSON",
                    help="take the parts not computed from this earlier study.json (e.g. recorded/p4_study.json)")
    ap.add_argument("--eps", default="1", help="the methods table's L-inf budget in 0-255 pixel units (default 1)")
    ap.add_argument("--plain-eps", default=plain, help=f"the plain sweep's eps, comma list (default {plain})")
    ap.add_argument("--eot-eps", default=eot, help=f"the EOT sweep's eps, comma list (default {eot})")
    ap.add_argument("--max-steps", type=positive_int, default=200,
                    help="steps per plain attack, both rules (default 200)")
    ap.add_argument("--eot-steps", type=positive_int, default=100, help="max steps per EOT attack (default 100)")
    ap.add_argument("--eot-samples", type=positive_int, default=4, help="random views per EOT step (default 4)")
    ap.add_argument("--momentum", type=unit_interval, default=0.5, help="I-FGSM's gradient momentum (default 0.5)")
    ap.add_argument("--confidence", type=float, default=0.9,
                    help="the target is reached when top-1 with at least this probability, in (0, 1) (default 0.9)")
    ap.add_argument("--n-images", type=positive_int, default=4,
                    help="attack the first K of the four demo images (default 4; fewer: quick checks)")
    ap.add_argument("--model", default="tf_efficientnet_lite0",
                    help="ImageNet classifier (default tf_efficientnet_lite0)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--threads", type=thread_count, default=None, help="torch CPU threads (default: torch's)")
    add_common_args(ap, "p4", out_help="study.json and study.png")
    return ap.parse_args(argv)


def parse_parts(text: str | None, recorded: bool) -> tuple:
    if text is None:
        return () if recorded else PARTS
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["none"]:
        return ()
    bad = [p for p in names if p not in PARTS]
    if bad or not names:
        raise UserError(f"--parts must be a comma list of {', '.join(PARTS)} or 'none', got {text!r}")
    return tuple(p for p in PARTS if p in names)


def parse_eps_list(text: str, flag: str) -> tuple:
    """A comma list of eps (each as --eps takes it), ascending, none twice; UserError naming `flag` otherwise."""
    items = [t.strip() for t in str(text).split(",")]
    if not any(items) or not all(items):
        raise UserError(f"{flag} must be a comma list of eps in 0-255 pixel units, such as 1,2,4; got {text!r}")
    try:
        values = [parse_eps(t) for t in items]
    except UserError as e:
        raise UserError(str(e).replace("--eps", flag, 1) + f" (in {flag} {text})") from None
    if len(set(values)) != len(values):
        raise UserError(f"{flag} lists an eps twice: {text}")
    return tuple(sorted(values))


def settings(args) -> StudySettings:
    """The checked settings; UserError names a flag that cannot work."""
    if args.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", args.device):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.n_images > 4:
        raise UserError(f"--n-images must be 1 to 4 (the demo has four images), got {args.n_images}")
    return StudySettings(parts=parse_parts(args.parts, args.from_recorded is not None), eps=parse_eps(args.eps),
                         plain_eps=parse_eps_list(args.plain_eps, "--plain-eps"),
                         eot_eps=parse_eps_list(args.eot_eps, "--eot-eps"), max_steps=args.max_steps,
                         eot_steps=args.eot_steps, eot_samples=args.eot_samples, momentum=args.momentum,
                         confidence=args.confidence, n_images=args.n_images, model=args.model,
                         device=args.device, threads=args.threads, seed=args.seed, data_dir=args.data_dir)


def read_recording(path: Path) -> P4Study:
    return read_result(P4Study, path, "recorded study", "compute it with: python problems/p4_study.py, then copy "
                       "results/p4/study.json there")


def write(study: P4Study, out: Path) -> Path:
    """DIR/study.json with the figure redrawn from it (none when it holds no sweep)."""
    import matplotlib
    matplotlib.use("Agg")
    from problems.p4.figures import study_figure
    out.mkdir(parents=True, exist_ok=True)
    study.figures = {"sweep": FIGURE} if study_figure(study, out / FIGURE) else {}
    study.write(out / "study.json")
    return out / "study.json"


def main(argv=None) -> int:
    args = parse_args(argv)
    s = settings(args)
    recording = read_recording(args.from_recorded) if args.from_recorded is not None else None
    if recording is None and not s.parts:
        raise UserError("--parts none computes nothing: give --from-recorded JSON to redraw a recording")
    command = command_line()
    computed = None
    if s.parts:
        if recording is not None:
            check_compatible(recording, s)
        computed = run_study(s, command)
    study = merge(computed, recording, portable_path(args.from_recorded) if recording is not None else None,
                  command)
    path = write(study, args.out)
    rec = study.recorded_parts()
    print(f"wrote {path} and {FIGURE if study.figures else 'no figure'}"
          + (f"; recorded parts ({', '.join(rec)}) from {study.recorded_from}" if rec else ""))
    return 0
