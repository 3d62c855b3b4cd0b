"""P4's attack: targeted adversarial examples on 8-bit images, and the transforms that test their robustness.

Images are uint8 tensors ``(3, H, W)`` in 0-255 pixel units; ``net`` is a pixel-space model
(``with_normalization``) that maps ``x / 255`` (N, 3, H, W) to ImageNet logits (N, 1000).

* :func:`attack` -- targeted attack inside the integer L-inf ball ``|X' - X| <= eps`` (I-FGSM with momentum,
  or the assignment's ``X' <- X' + lambda dP(y_fool|X')/dX'``), optionally with expectation over
  transformation (:func:`random_transforms`).
* ``TRANSFORMS`` / :func:`robustness` -- flip, centre crop (80 % area), 30-degree rotation and greyscale of a
  PIL image, and the target's probability after each.
* :func:`psnr`, :func:`noise_image` -- how visible the perturbation is.

torch is imported inside the functions so that importing this module (for ``--help`` or argument errors)
stays cheap.
"""
from __future__ import annotations

import math
import time

import numpy as np
from PIL import Image, ImageOps

from problems.p4.result import TRANSFORM_NAMES, TransformRow

CROP_AREA = 0.8
ROTATION_DEG = 30


# -------------------------------------------------------------------------------------------- helpers
def to_uint8_tensor(im: Image.Image):
    """PIL RGB -> uint8 tensor (3, H, W)."""
    import torch
    return torch.from_numpy(np.array(im.convert("RGB"), dtype=np.uint8, copy=True)).permute(2, 0, 1)


def to_pil(x_u8) -> Image.Image:
    """uint8 tensor (3, H, W) -> PIL RGB."""
    return Image.fromarray(x_u8.permute(1, 2, 0).cpu().numpy().astype(np.uint8), "RGB")


def classify_u8(net, x_u8, k: int = 1):
    """Softmax of the pixel-space model on uint8 images (3,H,W) or (N,3,H,W): (probs (N,1000))."""
    import torch
    if x_u8.dim() == 3:
        x_u8 = x_u8.unsqueeze(0)
    dev = next(net.parameters()).device
    with torch.no_grad():
        return torch.softmax(net(x_u8.to(dev).float() / 255.0).float(), dim=1).cpu()


def psnr(a_u8, b_u8) -> float:
    """10 log10(255^2 / MSE) in dB between two uint8 images; inf when they are equal."""
    mse = float(((a_u8.double() - b_u8.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# ------------------------------------------------------------------------------------ robustness (PIL)
def crop_side(size: int, area: float = CROP_AREA) -> int:
    """Side of a crop keeping `area` of the pixels: round(size sqrt(area))."""
    return int(round(size * math.sqrt(area)))


def t_flip(im):
    """Horizontal mirror."""
    return ImageOps.mirror(im)


def t_crop(im, area: float = CROP_AREA):
    """Centre crop keeping `area` of the pixels (the object's middle), resized back to the input size."""
    w, h = im.size
    cw, ch = crop_side(w, area), crop_side(h, area)
    left, top = (w - cw) // 2, (h - ch) // 2
    return im.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC)


def t_rotate(im, deg: float = ROTATION_DEG):
    """Rotate `deg` degrees counter-clockwise about the centre, same size, black corners (bilinear)."""
    return im.rotate(deg, resample=Image.BILINEAR, expand=False, fillcolor=(0, 0, 0))


def t_gray(im):
    """Greyscale (ITU-R 601 luma) replicated to three channels."""
    return im.convert("L").convert("RGB")


TRANSFORMS = {"none": lambda im: im, "hflip": t_flip, f"crop{int(CROP_AREA * 100)}": t_crop,
              f"rotate{ROTATION_DEG}": t_rotate, "grayscale": t_gray}
assert tuple(TRANSFORMS) == TRANSFORM_NAMES   # the results' rows name them


def robustness(net, im: Image.Image, target: int, class_names):
    """Apply every transform to an 8-bit image: (a TransformRow per transform, the transformed images)."""
    import torch
    imgs = [f(im) for f in TRANSFORMS.values()]
    probs = classify_u8(net, torch.stack([to_uint8_tensor(i) for i in imgs]))
    rows = []
    for name, p in zip(TRANSFORMS, probs):
        top = int(p.argmax())
        rows.append(TransformRow(transform=name, target_prob=float(p[target]), top1=top,
                                 top1_name=class_names[top], top1_prob=float(p[top]), target_kept=top == target))
    return rows, imgs


# ------------------------------------------------------------------------------------ EOT (torch)
def random_transforms(x, n: int, gen):
    """n random differentiable views of x (1,3,H,W) in [0,1]: flip, crop (64-100 % area) + resize,
    rotation in [-35, 35] degrees (zero fill), greyscale; each applied with probability 1/2."""
    import torch
    import torch.nn.functional as F
    _, c, h, w = x.shape
    xs = x.expand(n, c, h, w)
    u = torch.rand(n, 8, generator=gen)
    flip = u[:, 0] < 0.5
    xs = torch.where(flip.view(n, 1, 1, 1).to(x.device), xs.flip(-1), xs)
    # crop + rotation as one affine map of the sampling grid
    do_crop, do_rot, do_gray = u[:, 1] < 0.5, u[:, 2] < 0.5, u[:, 3] < 0.5
    s = torch.where(do_crop, torch.sqrt(0.64 + 0.36 * u[:, 4]), torch.ones(n))
    tx = torch.where(do_crop, (1 - s) * (2 * u[:, 5] - 1), torch.zeros(n))
    ty = torch.where(do_crop, (1 - s) * (2 * u[:, 6] - 1), torch.zeros(n))
    ang = torch.where(do_rot, (2 * u[:, 7] - 1) * math.radians(35), torch.zeros(n))
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([s * cos, -s * sin, tx], 1), torch.stack([s * sin, s * cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(xs.shape), align_corners=False)
    xs = F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    luma = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    g = (xs * luma).sum(1, keepdim=True).expand_as(xs)
    return torch.where(do_gray.view(n, 1, 1, 1).to(x.device), g, xs)


# ------------------------------------------------------------------------------------------- attack
def attack(net, x0_u8, target: int, eps: float, method: str = "ifgsm", step: float | None = None,
           momentum: float = 0.5, lam="auto", max_steps: int = 200, confidence: float = 0.9,
           eot: int = 0, seed: int = 0, robust_check=None, check_every: int = 5, progress: bool = False):
    """Targeted attack of the 8-bit image `x0_u8` (3,H,W) inside the integer eps ball (eps in 0-255 units).

    Returns dict: x_u8 (the 8-bit adversarial image), steps (gradient steps taken), prob (target prob of
    x_u8), success, seconds, history (target prob per step). With eot > 0 each step's gradient is the
    mean over `eot` random transforms and success also needs `robust_check(x_u8) -> bool` (checked every
    `check_every` steps).
    """
    import torch
    if method not in ("ifgsm", "prob"):
        raise ValueError(f"unknown method {method!r}")
    dev = next(net.parameters()).device
    step = eps / 4 if step is None else float(step)
    x0 = x0_u8.to(dev).float()
    lo, hi = (x0 - eps).clamp(0, 255), (x0 + eps).clamp(0, 255)
    d = torch.zeros_like(x0)
    v = torch.zeros_like(x0)
    gen = torch.Generator().manual_seed(seed)
    hist = []
    t0 = time.perf_counter()
    success = False
    for s in range(max_steps + 1):
        xq = torch.minimum(torch.maximum(torch.round(x0 + d), lo), hi)
        xv = (xq / 255.0).unsqueeze(0).requires_grad_(True)
        logits = net(xv).float()
        logp = torch.log_softmax(logits, 1)[0]
        p = logp.detach().exp()
        hist.append(float(p[target]))
        if int(p.argmax()) == target and float(p[target]) >= confidence:
            if not eot:
                success = True
                break
            if s % check_every == 0 and robust_check(xq.round().to(torch.uint8).cpu()):
                success = True
                break
        if s == max_steps:
            break
        if eot:
            views = random_transforms(xv, eot, gen)
            lp = torch.log_softmax(net(views).float(), 1)[:, target]
            obj = torch.cat([lp, logp[target:target + 1]]).mean()
            if progress and s % 10 == 0:
                print(f"     EOT step {s}: P(target) {hist[-1]:.3f}, mean over views "
                      f"{float(lp.detach().exp().mean()):.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
        elif method == "prob":
            obj = logp[target].exp()      # P(y_fool | X'): the assignment's objective
        else:
            obj = logp[target]
        g, = torch.autograd.grad(obj, xv)
        g = g[0]
        if method == "prob" and not eot:
            gmax = float(g.abs().max())
            if gmax == 0:
                break
            lam_t = step / (gmax * 255.0) if lam == "auto" else float(lam)
            upd = lam_t * g * 255.0                     # lambda * dP/dX' with X' in [0,1], in pixel units
        else:
            if momentum > 0:
                v = momentum * v + g / g.abs().mean().clamp_min(1e-20)
                g = v
            upd = step * torch.sign(g)
        d = (x0 + (d + upd).clamp(-eps, eps)).clamp(0, 255) - x0
    x_u8 = xq.round().clamp(0, 255).to(torch.uint8).cpu()
    return {"x_u8": x_u8, "steps": s, "prob": hist[-1], "success": success,
            "seconds": time.perf_counter() - t0, "history": hist}


# ----------------------------------------------------------------------------------- visibility
def noise_image(adv_u8, x_u8, eps):
    """(adv - x) per channel, mapped -eps -> 0, 0 -> mid-grey, +eps -> 1 (i.e. x 1/(2 eps) + 0.5)."""
    d = adv_u8.float() - x_u8.float()
    return (d / (2 * eps) + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
