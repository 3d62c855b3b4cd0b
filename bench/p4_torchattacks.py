"""Optional: torchattacks' targeted PGD (50 steps, step eps/4) against P4's attack on the same images, same run.

    python bench/p4_torchattacks.py [--eps 1] [--threads 1] [--data-dir D] [--out bench/results] [--seed 0]

Both attack the same 8-bit preprocessed images with EfficientNet-Lite0 on CPU. torchattacks works in
continuous [0, 1] space, so its output is rounded to 8 bits (what a saved PNG holds) before scoring; P4's
attack scores the 8-bit image at every step and stops at P(target) >= 0.9. Needs `pip install torchattacks`
(not a project dependency): without it only P4's numbers are written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from problems.p4 import run as P4  # noqa: E402  (parse_eps, demo_images and the attack helpers it imports)
from problems.common.cli import output_folder, run_main, seed_value, thread_count  # noqa: E402
from problems.common.pretrained import load_image_rgb, load_pretrained, with_normalization  # noqa: E402
from scratchnet.io import write_json  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eps", default="1", help="L-inf budget in 0-255 pixel units, at least 1 (default 1)")
    ap.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--data-dir", default=None, help="data root (default: $SCRATCHNET_DATA, else ./data)")
    ap.add_argument("--out", type=output_folder, default=Path("bench/results"),
                    help="folder for p4_torchattacks.json (default bench/results/)")
    ap.add_argument("--seed", type=seed_value, default=0,
                    help="seed for torch (PGD's random start) and P4's attack (default 0)")
    args = ap.parse_args(argv)
    args.eps = P4.parse_eps(args.eps)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    jobs, _ = P4.demo_images(args.data_dir)   # the data is checked before the model loads
    for path, _, _ in jobs:
        load_image_rgb(path)
    model, pre, names = load_pretrained()
    net = with_normalization(model, pre)
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    rows = []
    for path, target, _ in jobs:
        x = P4.to_uint8_tensor(pre.geometric(load_image_rgb(path)))
        row = {"image": Path(path).name, "target": names[target], "eps": args.eps}
        r = P4.attack(net, x, target, args.eps, seed=args.seed)
        p = P4.classify_u8(net, r["x_u8"])[0]
        row["p4"] = {"steps": r["steps"], "seconds": round(r["seconds"], 2),
                     "target_prob_8bit": float(p[target]), "top1": names[int(p.argmax())]}
        if torchattacks is not None:
            atk = torchattacks.PGD(net, eps=args.eps / 255, alpha=args.eps / 255 / 4, steps=50, random_start=True)
            atk.set_mode_targeted_by_label(quiet=True)
            xf = (x.float() / 255).unsqueeze(0)
            t0 = time.perf_counter()
            adv = atk(xf, torch.tensor([target]))
            sec = time.perf_counter() - t0
            adv8 = (adv[0] * 255).round().clamp(0, 255).to(torch.uint8)
            pf = torch.softmax(net(adv).detach(), 1)[0]
            p8 = P4.classify_u8(net, adv8)[0]
            row["torchattacks_pgd"] = {"steps": 50, "seconds": round(sec, 2),
                                       "target_prob_float": float(pf[target]),
                                       "target_prob_8bit": float(p8[target]), "top1_8bit": names[int(p8.argmax())],
                                       "linf_8bit": int((adv8.int() - x.int()).abs().max())}
        print(row, flush=True)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "p4_torchattacks.json",
               {"threads": args.threads, "seed": args.seed,
                "torchattacks": getattr(torchattacks, "__version__", None), "rows": rows})


if __name__ == "__main__":
    sys.exit(run_main(main))
