"""P4's figures: the attacked images with their noise, and the adversarial images under each transform.

Each row is a ``problems.p4.run.Attacked``: the results entry plus the clean model input ``x_pil``, the
uint8 (3, H, W) images ``x_u8`` / ``adv_u8``, ``frac_changed`` and ``robust_imgs`` (the transformed PIL
images, in ``TRANSFORMS`` order).
"""
from __future__ import annotations

from problems.p4.attack import TRANSFORMS, noise_image, to_pil


# Figure sizes and fonts are chosen for the report's page (176 mm of text width, at most 222 mm tall): there
# every label prints at about 7 pt or more.
def attack_figure(rows, path, eps):
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    n = len(rows)
    fig, axs = plt.subplots(n, 3, figsize=(6.6, 2.75 * n + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        e = row.entry
        axs[r, 0].imshow(row.x_pil)
        axs[r, 0].set_title(f"original:\n{e.clean_top1.name[:22]} ({e.clean_prob:.3f})", fontsize=9.5)
        axs[r, 1].imshow(noise_image(row.adv_u8, row.x_u8, e.eps))
        axs[r, 1].set_title(f"noise x{127.5 / e.eps:.0f}, eps {e.eps:g}/255\n"
                            f"L-inf {e.linf:g}, {100 * row.frac_changed:.0f}% changed", fontsize=9.5)
        axs[r, 2].imshow(to_pil(row.adv_u8))
        axs[r, 2].set_title(f"adversarial:\n{e.adv_top1.name[:22]} ({e.adv_prob:.3f})\n"
                            f"{e.steps} steps, PSNR {e.psnr_db:.1f} dB", fontsize=9.5)
        for ax in axs[r]:
            ax.axis("off")
    fig.suptitle(f"targeted attacks, eps = {eps:g}/255 (noise: grey = unchanged)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches=None)
    plt.close(fig)


def robustness_figure(rows, path, title):
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    n, m = len(rows), len(TRANSFORMS)
    fig, axs = plt.subplots(n, m, figsize=(1.75 * m, 2.15 * n + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        for c, (tr, im) in enumerate(zip(row.entry.robustness, row.robust_imgs)):
            axs[r, c].imshow(im)
            axs[r, c].set_title(f"{tr.transform}\n{tr.top1_name[:15]} ({tr.top1_prob:.2f})\n"
                                f"P(target) {tr.target_prob:.3f}", fontsize=9,
                                color="green" if tr.target_kept else "red")
            axs[r, c].axis("off")
    fig.suptitle(title, fontsize=9.5)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches=None)
    plt.close(fig)


def study_figure(study, path) -> bool:
    """The eps sweeps of a P4Study: share of images where the attack reached the target (on the image, and
    under every transform) and mean P(target), against eps, plain beside EOT; False when it has no sweep."""
    from matplotlib.figure import Figure
    from problems.common.plots import save_figure
    from problems.p4.study_result import KIND_LABEL, sweep_rows
    sweeps = [s for s in (study.plain, study.eot) if s is not None and s.points]
    if not sweeps:
        return False
    # 6.6 x 2.9 in, printed at the text width (176 mm, about 6.9 in): 8 pt labels print at about 8 pt
    fig = Figure(figsize=(6.6, 2.9))
    ax_ok, ax_p = fig.subplots(1, 2)
    colours = {"plain": "#4c72b0", "eot": "#dd8452"}
    for s in sweeps:
        rows = sweep_rows(s)
        # nudged apart along the log axis, so that equal values of the two attacks do not hide each other
        eps = [r.eps * (0.96 if s.kind == "plain" else 1.04) for r in rows]
        c, name = colours[s.kind], KIND_LABEL[s.kind].replace(" attack", "")
        ax_ok.plot(eps, [100 * r.on_image / r.n for r in rows], "o-", color=c, ms=4,
                   label=f"{name}: untransformed image")
        ax_ok.plot(eps, [100 * r.all_kept / r.n for r in rows], "s--", color=c, ms=4,
                   label=f"{name}: under the transforms")
        ax_p.plot(eps, [100 * r.mean_prob for r in rows], "o-", color=c, ms=4)
        ax_p.plot(eps, [100 * r.mean_worst for r in rows], "s--", color=c, ms=4)
    ticks = sorted({e for s in sweeps for e in s.eps})
    for ax, ylabel in ((ax_ok, "images (%)"), (ax_p, "mean P(target) (%)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(-4, 104)
        ax.set_xlabel("eps (0-255 pixel units)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    ax_ok.set_title("target reached (dashed: under every transform)", fontsize=8.5)
    ax_p.set_title("mean P(target) (dashed: worst transform)", fontsize=8.5)
    fig.legend(*ax_ok.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.15 if len(sweeps) == 2 else 0.09, 1, 1))
    save_figure(fig, path, dpi=150, bbox_inches=None)
    return True
