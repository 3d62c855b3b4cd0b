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
