"""P4: targeted adversarial examples in 8-bit pixel space, and how robust they are to simple transforms.

    python problems/p4_adversarial.py [--image PATH --target ID_OR_NAME]... [--eps E] [--eot]
                                      [--data-dir D] [--out DIR] [--seed S]

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
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

from problems.common.adversarial import (TRANSFORMS, attack, classify_u8, psnr, robustness, to_pil,
                                         to_uint8_tensor)
from problems.common.adversarial_figures import attack_figure, robustness_figure
from problems.common.assets import peppers_path
from problems.common.cli import (UserError, add_common_args, command_line, portable_path, positive_float,
                                 positive_int, run_main, seed_everything, thread_count, unit_interval)
from scratchnet.io import write_json, write_text

EOT_EPS = (2, 4, 8, 16)


# ------------------------------------------------------------------------------------------ demo images
def demo_images(data_dir):
    """The four-image demo: (path, target id, ids that count as a correct clean prediction)."""
    import matplotlib
    import skimage
    sk = Path(skimage.__file__).parent / "data"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return [
        (peppers_path(data_dir), 812, [945]),                          # bell pepper -> space shuttle
        (sk / "coffee.png", 1, [967]),                                # espresso -> goldfish
        (sk / "chelsea.png", 937, [281, 282, 283, 285]),              # cat (tabby/tiger/Persian/Egyptian) -> broccoli
        (sk / "rocket.jpg", 207, [657, 744, 812]),                    # missile/projectile/shuttle -> golden retriever
    ], mpl / "grace_hopper.jpg"


# ------------------------------------------------------------------------------------ results text
DISCUSSION = {
    "hflip": ("A mirror image moves every pixel's perturbation to the mirrored place. The perturbation is "
              "tuned to the exact pixel grid and the exact filters that read it; the network's filters are "
              "not mirror-symmetric, so the flipped noise no longer adds up along the gradient direction "
              "and the clean content (which the net recognises in either orientation) usually wins."),
    "crop80": ("Cropping and re-sizing (bicubic) shifts and stretches the perturbation by a non-integer "
               "factor and low-pass filters it; a +-1 grey-level, pixel-sized pattern is largely averaged "
               "away, so the attack breaks in most cases."),
    "rotate30": ("Rotation resamples every pixel with bilinear interpolation, which both moves and smooths "
                 "the noise (and adds black corners); the high-frequency pattern decorrelates from the "
                 "filters it was tuned for, so the target is lost."),
    "grayscale": ("Greyscale keeps the pixel grid but mixes the three channels (0.299 R + 0.587 G + 0.114 B) "
                  "and replicates the result; the per-channel signs of the noise partly cancel and the colour "
                  "directions the attack used disappear, so its effect shrinks, though the spatial part "
                  "survives; whether the target holds depends on how much of the attack was in "
                  "luminance."),
    "eot": ("Expectation over transformation optimises the average log-probability over random flips, "
            "crops, rotations and greyscale (plus the plain image), so the perturbation has to be a pattern "
            "the network reads as the target in all of them: larger, smoother, orientation-independent "
            "structures (on the rocket the noise draws dog-like fur and faces) instead of a pixel-exact "
            "pattern. That needs a bigger budget: with the default settings eps 2 survives flips, crops "
            "and greyscale but not the 30-degree rotation, eps 4 survives all four on the demo images. "
            "Each step costs (views + 1) forward/backward passes, and the noise (PSNR about 39 dB) is "
            "still hard to see."),
}


def observed(entries) -> dict:
    """Per transform: in how many images the target stayed top-1, and the mean target probability."""
    out = {}
    for name in list(TRANSFORMS)[1:]:
        rows = [r for e in entries for r in e["robustness"] if r["transform"] == name]
        out[name] = (f"observed: target kept in {sum(r['target_kept'] for r in rows)}/{len(rows)} images, "
                     f"mean P(target) {np.mean([r['target_prob'] for r in rows]):.3f}")
    return out


def markdown_tables(entries, title) -> list[str]:
    md = [f"## {title}", "",
          "| image | clean top-1 (p) | target | eps | L-inf | PSNR dB | steps | s | pixels changed "
          "| adv top-1 (p), saved PNG |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        md.append(f"| {Path(e['image']).name} | {e['clean_top1']['name']} ({e['clean_prob']:.3f}) "
                  f"| {e['target']['name']} ({e['target']['class_id']}) | {e['eps']:g} | {e['linf']} "
                  f"| {e['psnr_db']:.1f} | {e['steps']} | {e['seconds']:.1f} "
                  f"| {100 * e['frac_pixels_changed']:.1f}% | {e['adv_top1']['name']} ({e['adv_prob']:.3f}) |")
    names = [r["transform"] for r in entries[0]["robustness"]]
    md += ["", "P(target) / top-1 after each transform of the saved adversarial PNG:", "",
           "| image | " + " | ".join(names) + " |", "| --- " * (len(names) + 1) + "|"]
    for e in entries:
        md.append(f"| {Path(e['image']).name} | " + " | ".join(
            f"{r['target_prob']:.3f} / {r['top1_name']}" for r in e["robustness"]) + " |")
    return md + [""]


# ---------------------------------------------------------------------------------------------- main
def run_one(net, pre, names, path, target, eps, args, expected=None, eot=0, robust_check=None,
            out=None, suffix="_adv"):
    import torch
    from problems.common.pretrained import load_image_rgb
    x_pil = pre.geometric(load_image_rgb(path))
    x_u8 = to_uint8_tensor(x_pil)
    p0 = classify_u8(net, x_u8)[0]
    c0 = int(p0.argmax())
    clean_ok = None if expected is None else c0 in expected
    line = (f"{Path(path).name}: clean top-1 {names[c0]} ({c0}) p={float(p0[c0]):.3f}"
            + ("" if clean_ok is None else (" correct" if clean_ok else " NOT the expected class")))
    print(line)
    res = attack(net, x_u8, target, eps, method=args.method, step=args.step if not eot else
                 (args.step if args.step is not None else eps / 8),
                 momentum=args.momentum, lam=args.lam, max_steps=args.max_steps if not eot else args.eot_steps,
                 confidence=args.confidence, eot=eot, seed=args.seed,
                 robust_check=robust_check, progress=bool(eot))
    png = out / f"{Path(path).stem}{suffix}.png"
    to_pil(res["x_u8"]).save(png)
    back = to_uint8_tensor(Image.open(png))         # load the saved PNG back: it is what counts
    assert back.shape == res["x_u8"].shape and torch.equal(back, res["x_u8"])
    p1 = classify_u8(net, back)[0]
    c1 = int(p1.argmax())
    linf = int((back.int() - x_u8.int()).abs().max())
    changed = float((back != x_u8).any(0).float().mean())
    rob, rob_imgs = robustness(net, to_pil(back), target, names)
    entry = {
        "image": portable_path(path, args.data_dir), "adv_png": png.name, "target": {"class_id": target, "name": names[target]},
        "eps": eps, "linf": linf, "psnr_db": round(psnr(back, x_u8), 2),
        "clean_top1": {"class_id": c0, "name": names[c0]}, "clean_prob": float(p0[c0]),
        "clean_correct": clean_ok, "clean_target_prob": float(p0[target]),
        "adv_top1": {"class_id": c1, "name": names[c1]}, "adv_prob": float(p1[c1]),
        "adv_target_prob": float(p1[target]),
        "success": bool(c1 == target and float(p1[target]) >= args.confidence and linf <= eps),
        "steps": res["steps"], "seconds": round(res["seconds"], 3),
        "frac_pixels_changed": round(changed, 4),
        "frac_values_changed": round(float((back != x_u8).float().mean()), 4),
        "robustness": rob,
    }
    print(f"  -> {names[target]} ({target}): saved PNG top-1 {names[c1]} p={float(p1[c1]):.3f}, "
          f"eps {eps:g}, L-inf {linf}, PSNR {entry['psnr_db']:.1f} dB, {res['steps']} steps, "
          f"{res['seconds']:.2f} s, {100 * changed:.0f}% pixels changed"
          + ("" if entry["success"] else "  [FAILED]"))
    print("     robustness: " + ", ".join(f"{r['transform']} P(target)={r['target_prob']:.3f} "
                                          f"top-1 {r['top1_name']}" for r in rob[1:]))
    fig_row = dict(entry, x_pil=x_pil, x_u8=x_u8, adv_u8=back, frac_changed=changed,
                   psnr=entry["psnr_db"], robust_imgs=rob_imgs)
    return entry, fig_row


def parse_eps(text) -> float:
    try:
        e = float(text)
    except (TypeError, ValueError):
        raise UserError(f"--eps must be a number of 0-255 pixel units > 0, got {text!r}") from None
    if not (e > 0) or not math.isfinite(e):
        raise UserError(f"--eps must be > 0 (0-255 pixel units), got {text}")
    if e < 1:
        raise UserError(f"--eps must be at least 1 (0-255 pixel units): 8-bit pixels change in whole steps, "
                        f"so a smaller ball leaves the image as it is; got {text}")
    if e >= 255:
        raise UserError(f"--eps must be below 255 (0-255 pixel units), got {text}")
    return e


def main(argv=None):
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
    args = ap.parse_args(argv)
    eps = parse_eps(args.eps)
    if args.lam != "auto":
        try:
            args.lam = float(args.lam)
        except ValueError:
            raise UserError(f"--lam must be 'auto' or a number > 0, got {args.lam!r}") from None
        if not (args.lam > 0 and math.isfinite(args.lam)):
            raise UserError(f"--lam must be 'auto' or a finite number > 0, got {args.lam}")
    if args.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", args.device):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    seed_everything(args.seed)

    import matplotlib
    matplotlib.use("Agg")
    import torch
    from problems.common.pretrained import (imagenet_class_id, imagenet_class_names, load_image_rgb,
                                            load_pretrained, preprocessing_info, with_normalization)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for but no CUDA GPU is visible; use --device cpu")
    names = imagenet_class_names()

    images = args.image or []
    targets = args.target or []
    if images or targets:
        if len(images) != len(targets):
            raise UserError(f"give one --target per --image ({len(images)} images, {len(targets)} targets)")
        jobs = [(p, imagenet_class_id(t, names), None) for p, t in zip(images, targets)]
        stems = [Path(p).stem for p in images]
        clash = sorted({s for s in stems if stems.count(s) > 1})
        if clash:  # DIR/<stem>_adv.png: the second would overwrite the first
            raise UserError(f"two --image files share the name {clash[0]!r}; their outputs in --out would "
                            "overwrite each other: rename or copy one")
    else:
        jobs, _ = demo_images(args.data_dir)
    written = {"attack.png", "robustness.png", "results.json", "results.md"}  # what this run writes in --out
    written |= {"attack_eot.png", "robustness_eot.png", "results_eot.json"} if args.eot else set()
    for p, _, _ in jobs:
        written.add(f"{Path(p).stem}_adv.png")
        written |= {f"{Path(p).stem}_eot{e}.png" for e in EOT_EPS} if args.eot else set()
    for p, _, _ in jobs:            # every input is checked before any work starts
        load_image_rgb(p)
        if Path(p).resolve().parent == Path(args.out).resolve() and Path(p).name in written:
            raise UserError(f"--image {p} lies in --out and has the name of a file this run writes there; "
                            "copy it elsewhere or choose another --out")

    model, pre, names = load_pretrained(args.model, device=args.device)
    net = with_normalization(model, pre)
    info = preprocessing_info(model)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    header = {"command": command_line(), "seed": args.seed,
              "model": {k: info[k] for k in ("name", "library", "weights")},
              "preprocessing": info["preprocessing"], "device": args.device,
              "threads": torch.get_num_threads(),
              "method": {"update": args.method, "step_px": args.step if args.step is not None else eps / 4,
                         "momentum": args.momentum if args.method == "ifgsm" else None,
                         "lambda": args.lam if args.method == "prob" else None,
                         "confidence": args.confidence, "max_steps": args.max_steps,
                         "gradient_at": "the 8-bit rounding of X' (straight-through)"},
              "noise_display": "(adv - orig) / (2 eps) + 0.5 per channel: grey = unchanged, "
                               "-eps -> black, +eps -> full intensity"}

    entries, fig_rows = [], []
    for p, tgt, expected in jobs:
        e, fr = run_one(net, pre, names, p, tgt, eps, args, expected=expected, out=out)
        entries.append(e)
        fig_rows.append(fr)
    attack_figure(fig_rows, out / "attack.png", eps)
    robustness_figure(fig_rows, out / "robustness.png",
                      f"plain attack (eps {eps:g}/255) under transforms; green: target kept")
    results = dict(header, eps=eps, images=entries,
                   summary={"all_succeeded": all(e["success"] for e in entries),
                            "total_steps": sum(e["steps"] for e in entries),
                            "total_seconds": round(sum(e["seconds"] for e in entries), 2)},
                   figures={"attack": "attack.png", "robustness": "robustness.png"},  # relative to results.json
                   discussion={k: v for k, v in DISCUSSION.items() if k != "eot"},
                   discussion_observed=observed(entries))
    write_json(out / "results.json", results)
    md = [f"# P4: targeted adversarial examples ({info['name']})", ""]
    md += markdown_tables(entries, f"Plain attack ({args.method}, eps {eps:g}/255)")
    md += [f"- **{k}**: {v} ({results['discussion_observed'][k]})" for k, v in results["discussion"].items()]
    write_text(out / "results.md", "\n".join(md) + "\n")
    print(f"wrote {out / 'results.json'}, attack.png, robustness.png")

    if args.eot:
        eot_entries, eot_rows = [], []
        for (p, tgt, expected), plain in zip(jobs, entries):
            def check(x_u8, tgt=tgt):
                rows, _ = robustness(net, to_pil(x_u8), tgt, names)
                return all(r["target_kept"] for r in rows)
            tried = []
            for e_try in EOT_EPS:
                e, fr = run_one(net, pre, names, p, tgt, float(e_try), args, expected=expected,
                                eot=args.eot_samples, robust_check=check, out=out, suffix=f"_eot{e_try}")
                kept = all(r["target_kept"] for r in e["robustness"])
                tried.append({"eps": e_try, "success": e["success"], "all_transforms_kept": kept,
                              "steps": e["steps"], "seconds": e["seconds"]})
                if e["success"] and kept:
                    break
            e["eps_tried"] = tried
            e["plain_robustness"] = plain["robustness"]
            eot_entries.append(e)
            eot_rows.append(fr)
        attack_figure(eot_rows, out / "attack_eot.png", max(r["eps"] for r in eot_entries))
        robustness_figure(eot_rows, out / "robustness_eot.png",
                          "EOT attack under the same transforms; green: target kept")
        write_json(out / "results_eot.json", dict(
            header, eot={"samples_per_step": args.eot_samples, "max_steps": args.eot_steps,
                         "eps_grid": list(EOT_EPS), "step_px": "eps/8" if args.step is None else args.step,
                         "distribution": "flip p=1/2; crop 64-100% area at a random place p=1/2; rotation "
                                         "U(-35, 35) degrees p=1/2; greyscale p=1/2; plus the plain image"},
            images=eot_entries, figures={"attack": "attack_eot.png", "robustness": "robustness_eot.png"},
            discussion=DISCUSSION["eot"], discussion_observed=observed(eot_entries)))
        md += ["", *markdown_tables(eot_entries, "EOT attack (smallest eps of 2, 4, 8, 16 that survives "
                                                  "all four transforms)"), DISCUSSION["eot"], ""]
        md += [f"- {k}: {v}" for k, v in observed(eot_entries).items()]
        write_text(out / "results.md", "\n".join(md) + "\n")
        print(f"wrote {out / 'results_eot.json'}, attack_eot.png, robustness_eot.png")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
