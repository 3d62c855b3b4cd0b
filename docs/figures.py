"""The walkthrough's figures, each computed by scratchnet's own ops on a tiny example and drawn with matplotlib.

    python docs/figures.py [OUT_DIR]        # writes OUT_DIR/<name>.png for every figure (default docs/figures/)

Every figure function returns a `matplotlib.figure.Figure` (no pyplot, so nothing global changes), which
is what the notebook's cells call: `figures.im2col()` draws figure 2 inline. The numbers in each figure
come from scratchnet (`scratchnet.kernels.*`, `scratchnet.Tensor`, `scratchnet.nn`, `scratchnet.optim`);
the drawing code only places them, and each function asserts what its picture claims (for example that
the flipped kernel slid over the framed dout gives `conv2d_backward`'s dx), so a figure cannot show a
relation the library does not satisfy.

The PNGs are deterministic: fixed inputs and seeds, matplotlib's default style whatever the local
matplotlibrc says, and no timestamp or version string in the file (rerunning gives the same bytes with
the same matplotlib). The file records which matplotlib drew it (PNG text key "Source"), which is what
tests/test_walkthrough_figures.py uses to choose how strictly to compare pixels.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

import scratchnet as sn
from scratchnet import nn, optim
from scratchnet import functional as F
from scratchnet.kernels import conv, loss, norm, pool

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "figures"
DPI = 100
RED, BLUE, GREY = "#c0392b", "#1f5fa8", "0.55"
COLOURS = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628"]  # one per window / row
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.spines.top": False, "axes.spines.right": False}


def _styled(draw):
    """Run a figure function under matplotlib's default style plus STYLE, whatever the local rc says."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.style.context("default", after_reset=True), matplotlib.rc_context(STYLE):
            fig = draw(*args, **kwargs)
        FigureCanvasAgg(fig)
        return fig
    return wrapper


# --------------------------------------------------------------------------------------------------
# Drawing helpers: grids of numbers on an axes whose y axis points down (row r is drawn at y = top + r).
# --------------------------------------------------------------------------------------------------

def _board(fig, rect, width, height):
    """An axes with equal units, y pointing down, no ticks: a canvas for grids and arrows."""
    ax = fig.add_axes(rect)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _num(v) -> str:
    v = float(v)
    return f"{v:.0f}" if v == round(v) else f"{v:.2g}"


def _grid(ax, a, left, top, faces=None, fmt=_num, fontsize=11, colours=None, edge="0.35", size=1.0):
    """Draw the 2-D array `a` as cells with their values; faces/colours: per-cell fill / text colour."""
    a = np.asarray(a)
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            face = "white" if faces is None else faces[r][c]
            ax.add_patch(Rectangle((left + c * size, top + r * size), size, size, facecolor=face,
                                   edgecolor=edge, linewidth=0.8))
            colour = "black" if colours is None else colours[r][c]
            ax.text(left + (c + 0.5) * size, top + (r + 0.5) * size, fmt(a[r, c]), ha="center",
                    va="center", fontsize=fontsize, color=colour)


def _outline(ax, left, top, width, height, colour, inset=0.0, lw=2.5, ls="-"):
    ax.add_patch(Rectangle((left + inset, top + inset), width - 2 * inset, height - 2 * inset,
                           fill=False, edgecolor=colour, linewidth=lw, linestyle=ls))


def _label(ax, x, y, text, **kw):
    kw.setdefault("ha", "center")
    kw.setdefault("va", "center")
    ax.text(x, y, text, **kw)


def _tint(colour, alpha=0.28):
    """A light version of `colour` (blended with white), as an RGB tuple."""
    rgb = np.array(matplotlib.colors.to_rgb(colour))
    return tuple(1 - alpha * (1 - rgb))


# --------------------------------------------------------------------------------------------------
# 1. Autograd: the graph of y = sum(x*x + x), with the gradient that flows back along every edge.
# --------------------------------------------------------------------------------------------------

class Tap(sn.Function):
    """Identity on the way forward; on the way back it writes down the gradient that passes through."""

    def forward(self, a, log=None, name=None):
        self.log, self.name = log, name
        return a

    def backward(self, g):
        self.log[self.name] = g
        return g


def autograd_numbers():
    """Values and per-edge gradients of y = sum(x*x + x) at x = [1, 2, 3], from scratchnet's backward."""
    log = {}
    x = sn.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    t1 = Tap.apply(x, log=log, name="x>mul_a") * Tap.apply(x, log=log, name="x>mul_b")
    t2 = Tap.apply(t1, log=log, name="t1>add") + Tap.apply(x, log=log, name="x>add")
    y = Tap.apply(t2, log=log, name="t2>sum").sum()
    y.backward()
    # The leaf's gradient is the sum of what arrived along its three edges (two into *, one into +);
    # along an edge into *, what arrives is the other factor times dy/dt1.
    assert np.allclose(x.grad, log["x>mul_a"] + log["x>mul_b"] + log["x>add"])
    return {"x": x.data, "t1": t1.data, "t2": t2.data, "y": y.data, "x_grad": x.grad, "edges": log}


def _vec(a) -> str:
    return "[" + " ".join(_num(v) for v in np.ravel(a)) + "]"


@_styled
def autograd_graph() -> Figure:
    n = autograd_numbers()
    e = n["edges"]
    fig = Figure(figsize=(11, 4.6), dpi=DPI)
    ax = _board(fig, [0.01, 0.0, 0.98, 0.92], 22, 9.2)
    fig.suptitle("y = sum(x*x + x): values forward (black), gradients backward (red)", fontsize=13)

    def tensor_box(cx, cy, name, value, grad):
        ax.add_patch(FancyBboxPatch((cx - 1.7, cy - 0.9), 3.4, 1.8, boxstyle="round,pad=0.1",
                                    facecolor="#f4f4f4", edgecolor="0.3"))
        _label(ax, cx, cy - 0.38, f"{name} = {value}", fontsize=11)
        _label(ax, cx, cy + 0.42, f"dy/d{name} = {grad}", fontsize=10.5, color=RED)

    def op(cx, cy, symbol):
        ax.add_patch(Circle((cx, cy), 0.7, facecolor="#dde8f5", edgecolor=BLUE, linewidth=1.5))
        _label(ax, cx, cy, symbol, fontsize=13, color=BLUE, fontweight="bold")

    def edge(a, b, rad=0.0, grad_text=None, at=(0, 0), shrink=(28, 22)):
        ax.add_patch(FancyArrowPatch(a, b, connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=14, color="0.2", linewidth=1.2,
                                     shrinkA=shrink[0], shrinkB=shrink[1]))
        if grad_text:
            _label(ax, at[0], at[1], grad_text, color=RED, fontsize=10, style="italic")

    X, MUL, T1, ADD, T2, SUM, Y = (2.2, 5.0), (6.6, 2.2), (10.2, 2.2), (13.4, 5.0), (16.3, 5.0), (18.8, 5.0), (20.9, 5.0)
    tensor_box(*X, "x", _vec(n["x"]), _vec(n["x_grad"]))
    op(*MUL, "×")
    tensor_box(*T1, "t1", _vec(n["t1"]), _vec(e["t1>add"]))
    op(*ADD, "+")
    tensor_box(*T2, "t2", _vec(n["t2"]), _vec(e["t2>sum"]))
    op(*SUM, "sum")
    ax.add_patch(FancyBboxPatch((Y[0] - 0.85, Y[1] - 0.9), 1.7, 1.8, boxstyle="round,pad=0.1",
                                facecolor="#f4f4f4", edgecolor="0.3"))
    _label(ax, Y[0], Y[1] - 0.38, f"y = {_num(n['y'])}", fontsize=11)
    _label(ax, Y[0], Y[1] + 0.42, "dy/dy = 1", fontsize=10, color=RED)

    # x feeds * twice: the gradient arriving along each edge is the other factor (x) times dy/dt1 = 1.
    edge((X[0] + 0.6, X[1] - 0.9), MUL, rad=-0.25, grad_text=_vec(e["x>mul_a"]), at=(2.6, 2.5),
         shrink=(0, 20))
    edge((X[0] + 1.6, X[1] - 0.9), MUL, rad=0.2, grad_text=_vec(e["x>mul_b"]), at=(5.6, 4.1),
         shrink=(0, 20))
    edge(MUL, T1, shrink=(20, 38))
    edge(T1, ADD, rad=0.15, grad_text=_vec(e["t1>add"]), at=(12.9, 3.0), shrink=(30, 20))
    edge((X[0] + 1.0, X[1] + 0.9), ADD, rad=0.35, grad_text=_vec(e["x>add"]), at=(7.0, 7.85), shrink=(0, 20))
    edge(ADD, T2, shrink=(20, 38))
    edge(T2, SUM, shrink=(38, 20))
    edge(SUM, Y, shrink=(20, 18))
    _label(ax, 11.0, 0.35, "red on an edge: the gradient sent back along it = (gradient of the node's output) × "
           "(local derivative)",
           fontsize=10, color="0.3")
    _label(ax, 14.0, 8.0, "x is used three times, so x.grad adds three arrivals:\n"
           f"{_vec(e['x>mul_a'])} + {_vec(e['x>mul_b'])} + {_vec(e['x>add'])} "
           f"= {_vec(n['x_grad'])} = 2x + 1", fontsize=10.5, color=RED)
    return fig


# --------------------------------------------------------------------------------------------------
# 2. Conv forward: im2col of a 3x4 image and a 2x2 kernel.
# --------------------------------------------------------------------------------------------------

def im2col_numbers():
    x = np.arange(1.0, 13.0).reshape(1, 3, 4, 1)              # N=1, H=3, W=4, C=1: the pixels 1..12
    w = np.array([[1.0, 2.0], [0.0, -1.0]]).reshape(2, 2, 1, 1)
    cols, (_, ho, wo) = conv.im2col(x, 2, 2, stride=1, padding=0)
    out, _ = conv.conv2d_forward(x, w, None, stride=1, padding=0)
    assert np.allclose((cols @ w.reshape(4, 1)).reshape(out.shape), out)
    return {"x": x[0, :, :, 0], "w": w[:, :, 0, 0], "cols": np.asarray(cols), "out": out[0, :, :, 0],
            "ho": ho, "wo": wo}


@_styled
def im2col() -> Figure:
    n = im2col_numbers()
    img, cols, w, out = n["x"], n["cols"], n["w"], n["out"]
    ho, wo = n["ho"], n["wo"]
    fig = Figure(figsize=(12, 4.5), dpi=DPI)
    ax = _board(fig, [0.0, 0.0, 1.0, 0.9], 30.5, 10.3)
    fig.suptitle("im2col: every 2x2 window of the 3x4 image becomes one row; one matrix product "
                 "then gives every output", fontsize=13)
    s = 0.62  # cell size of the small images
    for k in range(ho * wo):
        i, j = divmod(k, wo)
        left, top = 0.4 + j * (4 * s + 0.7), 1.9 + i * (3 * s + 1.6)
        faces = [[_tint(COLOURS[k]) if i <= r < i + 2 and j <= c < j + 2 else "white" for c in range(4)]
                 for r in range(3)]
        _grid(ax, img, left, top, faces=faces, fontsize=8.5, size=s)
        _outline(ax, left + j * s, top + i * s, 2 * s, 2 * s, COLOURS[k], lw=2.2)
        _label(ax, left + 2 * s, top - 0.4, f"window ({i},{j})", fontsize=9.5, color=COLOURS[k])
    _label(ax, 5.6, 0.6, "x (3x4), one copy per output (i, j)", fontsize=10.5)

    left, top = 12.4, 1.9
    faces = [[_tint(COLOURS[r]) for _ in range(4)] for r in range(cols.shape[0])]
    _grid(ax, cols, left, top, faces=faces)
    for r in range(cols.shape[0]):
        _label(ax, left - 0.25, top + r + 0.5, f"({r // wo},{r % wo})", ha="right", fontsize=9.5, color=COLOURS[r])
    _label(ax, left + 2, top - 1.0, "cols = conv.im2col(x, 2, 2)\n(6 windows x 2*2*1 values)", fontsize=10)
    _label(ax, left + 2, top + 7.0, "row (i, j) = x[i,j] x[i,j+1] x[i+1,j] x[i+1,j+1]", fontsize=9.5, color="0.35")
    _label(ax, left + 4.75, top + 3, "@", fontsize=16)
    _grid(ax, w.reshape(4, 1), left + 5.5, top + 1, faces=[["#eeeeee"]] * 4)
    _label(ax, left + 6.0, top + 0.45, "w (4x1)", fontsize=9.5)
    _label(ax, left + 7.25, top + 3, "=", fontsize=16)
    out_col = out.reshape(-1, 1)
    _grid(ax, out_col, left + 8.0, top, faces=[[_tint(COLOURS[r])] for r in range(len(out_col))])
    _label(ax, left + 8.5, top - 0.5, "(6x1)", fontsize=9.5)
    _label(ax, left + 10.0, top + 3, "reshape\n→", fontsize=11)
    faces = [[_tint(COLOURS[i * wo + j]) for j in range(wo)] for i in range(ho)]
    _grid(ax, out, left + 11.0, top + 2, faces=faces)
    _label(ax, left + 12.5, top + 1.3, "out (2x3) = conv2d_forward's", fontsize=10.5)
    _grid(ax, w, left + 11.5, top + 5.6, faces=[["#eeeeee"] * 2] * 2)
    _label(ax, left + 12.5, top + 5.0, "the kernel w (2x2); row by row\nit is the column w (4x1)", fontsize=9.5,
           color="0.35")
    return fig


# --------------------------------------------------------------------------------------------------
# 3. Conv backward: dx is the framed, zero-spread dout correlated with the flipped kernel.
# --------------------------------------------------------------------------------------------------

def conv_backward_numbers():
    """5x5 input, 3x3 kernel, stride 2, no padding: 2x2 output. dx from conv2d_backward, and the same dx
    as the forward conv of the framed dout P with the kernel rotated by 180 degrees."""
    k, s, p, h = 3, 2, 0, 5
    w = np.arange(1.0, 10.0).reshape(3, 3)
    dout = np.array([[1.0, -1.0], [2.0, 1.0]])
    x = np.zeros((1, h, h, 1))                                  # dx does not depend on x's values
    out, cache = conv.conv2d_forward(x, w.reshape(3, 3, 1, 1), None, stride=s, padding=p)
    dx, _, _ = conv.conv2d_backward(dout.reshape(out.shape), cache)
    r = (h + 2 * p - k) % s                                     # last rows/columns no window reached
    near, far = k - 1 - p, k - 1 - p + r
    frame = np.zeros((h + k - 1, h + k - 1))
    frame[near:near + s * (dout.shape[0] - 1) + 1:s, near:near + s * (dout.shape[1] - 1) + 1:s] = dout
    assert frame.shape[0] == near + s * (dout.shape[0] - 1) + 1 + far
    flipped = w[::-1, ::-1]
    again, _ = conv.conv2d_forward(frame.reshape(1, *frame.shape, 1), flipped.reshape(3, 3, 1, 1), None, 1, 0)
    assert np.allclose(again, dx)
    return {"w": w, "dout": dout, "frame": frame, "flipped": flipped, "dx": dx[0, :, :, 0], "near": near,
            "stride": s}


@_styled
def conv_backward() -> Figure:
    n = conv_backward_numbers()
    w, dout, frame, flipped, dx, near, s = (n[k] for k in ("w", "dout", "frame", "flipped", "dx", "near", "stride"))
    fig = Figure(figsize=(12.5, 6.0), dpi=DPI)
    ax = _board(fig, [0.0, 0.0, 1.0, 0.91], 29.5, 14.3)
    fig.suptitle("conv backward, 5x5 input, 3x3 kernel, stride 2: dx = (dout spread with s-1 zeros, framed) "
                 "⋆ (kernel flipped)", fontsize=12.5)
    top = 2.4
    dout_faces = [[_tint(BLUE, 0.35)] * 2] * 2
    _grid(ax, dout, 0.5, top + 2.5, faces=dout_faces)
    _label(ax, 1.5, top + 1.9, "dout (2x2)", fontsize=10.5)
    _label(ax, 3.6, top + 3.5, "spread,\nframe\n→", fontsize=10)

    left = 5.0
    in_frame = np.zeros(frame.shape, bool)
    in_frame[near:frame.shape[0] - near, near:frame.shape[1] - near] = True
    spread = np.zeros(frame.shape, bool)
    spread[near::s, near::s][:dout.shape[0], :dout.shape[1]] = True
    faces = [[_tint(BLUE, 0.35) if spread[r, c] else ("white" if in_frame[r, c] else "#e6e6e6")
              for c in range(frame.shape[1])] for r in range(frame.shape[0])]
    colours = [["black" if spread[r, c] else GREY for c in range(frame.shape[1])] for r in range(frame.shape[0])]
    _grid(ax, frame, left, top, faces=faces, colours=colours)
    _label(ax, left + 3.5, top - 1.3, "P (7x7): dout with s-1 = 1 zero between entries,\n"
           f"in a frame of k-1-p = {near} zeros (grey)", fontsize=10)
    windows = [((2, 2), COLOURS[0]), ((1, 0), COLOURS[2])]      # (row, col) of dx, colour
    for (y, z), colour in windows:
        _outline(ax, left + z, top + y, 3, 3, colour, inset=0.06, lw=2.8)

    _label(ax, left + 8.1, top + 3.5, "⋆", fontsize=34)
    _label(ax, left + 8.1, top + 4.5, "slide\nover P", fontsize=9, color="0.3")
    _grid(ax, flipped, left + 9.0, top + 2, faces=[["#eeeeee"] * 3] * 3)
    _label(ax, left + 10.5, top + 1.3, "w flipped", fontsize=10.5)
    _grid(ax, w, left + 9.45, top + 5.9, faces=[["#f7f7f7"] * 3] * 3, size=0.7, fontsize=9)
    _label(ax, left + 10.5, top + 5.45, "w (3x3), before the flip", fontsize=9.5, color="0.3")
    _label(ax, left + 13.0, top + 3.5, "=", fontsize=18)

    left_dx = left + 14.0
    faces = [["white"] * 5 for _ in range(5)]
    for (y, z), colour in windows:
        faces[y][z] = _tint(colour, 0.45)
    _grid(ax, dx, left_dx, top + 1, faces=faces)
    _label(ax, left_dx + 2.5, top + 0.4, "dx (5x5) = conv2d_backward's", fontsize=10.5)
    for (y, z), colour in windows:
        _outline(ax, left_dx + z, top + 1 + y, 1, 1, colour, inset=0.04, lw=2.8)

    lines = []
    for (y, z), colour in windows:
        terms = [(frame[y + u, z + v], flipped[u, v]) for u in range(3) for v in range(3) if frame[y + u, z + v]]
        text = " + ".join(f"({_num(d)})·{_num(f)}" for d, f in terms)
        count = "1 window" if len(terms) == 1 else f"{len(terms)} windows"
        lines.append((f"dx[{y},{z}] = {text} = {_num(dx[y, z])}", colour,
                      f"    (x[{y},{z}] sat in {count} of the forward pass)"))
    for i, (text, colour, note) in enumerate(lines):
        _label(ax, 0.5, top + 9.3 + i * 1.05, text + note, ha="left", fontsize=10.5, color=colour)
    _label(ax, 0.5, top + 11.4, "Stride 2 makes the spread; the frame lets windows hang over dout's edge; "
           "the flip pairs dout[i] with w[y - s·i].", ha="left", fontsize=10, color="0.3")
    return fig


# --------------------------------------------------------------------------------------------------
# 4. Max pooling: the gradient goes to the first maximum of each window, ties included.
# --------------------------------------------------------------------------------------------------

def maxpool_numbers():
    x = np.array([[1.0, 3.0, 2.0, 0.0],
                  [3.0, 0.0, 2.0, 2.0],
                  [0.0, 0.0, 5.0, 1.0],
                  [0.0, 0.0, 4.0, 5.0]]).reshape(1, 4, 4, 1)
    dout = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    out, cache = pool.max_pool2d_forward(x, 2)
    dx = pool.max_pool2d_backward(dout, cache)
    return {"x": x[0, :, :, 0], "out": out[0, :, :, 0], "dout": dout[0, :, :, 0], "dx": dx[0, :, :, 0]}


@_styled
def maxpool_routing() -> Figure:
    n = maxpool_numbers()
    x, out, dout, dx = n["x"], n["out"], n["dout"], n["dx"]
    fig = Figure(figsize=(12.5, 3.7), dpi=DPI)
    ax = _board(fig, [0.0, 0.0, 1.0, 0.88], 29, 7.5)
    fig.suptitle("2x2 max pooling: each window's gradient goes to its first maximum (row-major); "
                 "every window here has a tie", fontsize=12.5)
    top = 1.3
    win = lambda r, c: (r // 2) * 2 + c // 2  # noqa: E731 - window index of a pixel
    faces = [[_tint(COLOURS[win(r, c)], 0.22) for c in range(4)] for r in range(4)]
    _grid(ax, x, 1.0, top, faces=faces)
    for wi in range(4):
        _outline(ax, 1.0 + 2 * (wi % 2), top + 2 * (wi // 2), 2, 2, COLOURS[wi], inset=0.05)
    for r in range(4):
        for c in range(4):
            if x[r, c] == out[r // 2, c // 2]:
                chosen = dx[r, c] != 0
                ax.add_patch(Circle((1.5 + c, top + r + 0.5), 0.36, fill=False, linewidth=2 if chosen else 1.3,
                                    edgecolor="black", linestyle="-" if chosen else ":"))
    _label(ax, 3.0, top - 0.5, "x (4x4)", fontsize=10.5)
    _label(ax, 0.6, top + 4.9, "solid circle: the maximum that takes the gradient\n"
           "dotted circle: a tied maximum that gets none", ha="left", va="top", fontsize=9.5)

    _label(ax, 6.0, top + 2, "max\n→", fontsize=11)
    _grid(ax, out, 7.0, top + 1, faces=[[_tint(COLOURS[2 * i + j], 0.22) for j in range(2)] for i in range(2)])
    _label(ax, 8.0, top + 0.5, "out", fontsize=10.5)

    _grid(ax, dout, 11.0, top + 1, faces=[[_tint(COLOURS[2 * i + j], 0.22) for j in range(2)] for i in range(2)])
    _label(ax, 12.0, top + 0.5, "dout (from above)", fontsize=10.5)
    _label(ax, 14.2, top + 2, "route\n→", fontsize=11)

    left = 15.5
    faces = [[_tint(COLOURS[win(r, c)], 0.22) if dx[r, c] else "white" for c in range(4)] for r in range(4)]
    colours = [["black" if dx[r, c] else GREY for c in range(4)] for r in range(4)]
    _grid(ax, dx, left, top, faces=faces, colours=colours)
    for wi in range(4):
        _outline(ax, left + 2 * (wi % 2), top + 2 * (wi // 2), 2, 2, COLOURS[wi], inset=0.05)
    _label(ax, left + 2, top - 0.5, "dx = pool.max_pool2d_backward(dout, cache)", fontsize=10.5)
    notes = ["top-left: 3 and 3 tie, the first (row 0) wins",
             "top-right: three 2s tie, the first wins",
             "bottom-left: all zero (as after a ReLU), the first wins",
             "bottom-right: 5 and 5 tie, the first wins"]
    for i, text in enumerate(notes):
        _label(ax, left + 4.5, top + 0.5 + i, text, ha="left", fontsize=9.5, color=COLOURS[i])
    _label(ax, left + 2, top + 4.6, "dx sums to sum(dout): nothing is lost or counted twice", fontsize=9.5,
           color="0.3")
    assert dx.sum() == dout.sum() and np.count_nonzero(dx) == dout.size
    return fig


# --------------------------------------------------------------------------------------------------
# 5. Batch norm: a batch before and after, and the three terms of dx.
# --------------------------------------------------------------------------------------------------

def batchnorm_numbers(eps=1e-5):
    rng = np.random.default_rng(5)
    # 64 activations of 2 channels, correlated, off-centre and of different scales
    z = rng.standard_normal((64, 2))
    acts = np.stack([3.0 + 2.0 * z[:, 0], -2.0 + 0.5 * (0.6 * z[:, 0] + 0.8 * z[:, 1])], axis=1)
    x = acts.reshape(16, 2, 2, 2)
    y, _ = norm.batchnorm_forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), training=True, eps=eps)

    # the backward on one channel of ten values, gamma = 1.5
    m, gamma, beta = 10, np.array([1.5]), np.array([0.2])
    xs = (1.0 + 2.0 * rng.standard_normal(m)).reshape(m, 1, 1, 1)
    dy = rng.standard_normal(m).reshape(m, 1, 1, 1)
    ys, cache = norm.batchnorm_forward(xs, gamma, beta, np.zeros(1), np.ones(1), training=True, eps=eps)
    dx, dgamma, dbeta = norm.batchnorm_backward(dy, cache)
    xhat = ((ys - beta) / gamma).ravel()
    sigma = np.sqrt(xs.var() + eps)
    k = gamma[0] / sigma
    terms = np.stack([k * dy.ravel(), np.full(m, -k * dbeta[0] / m), -k * xhat * dgamma[0] / m])
    assert np.allclose(terms.sum(0), dx.ravel())
    order = np.argsort(xhat)
    return {"before": acts, "after": y.reshape(-1, 2), "xhat": xhat[order], "terms": terms[:, order],
            "dx": dx.ravel()[order], "dbeta": dbeta[0], "dgamma": dgamma[0]}


@_styled
def batchnorm() -> Figure:
    n = batchnorm_numbers()
    fig = Figure(figsize=(12.5, 4.8), dpi=DPI)
    fig.suptitle("batch norm: each channel of the batch centred and scaled (left); dx as three terms (right)",
                 fontsize=12.5)
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 1.7], left=0.05, right=0.98, bottom=0.13, top=0.8,
                          wspace=0.3)
    lim = (-6.5, 8.5)
    for i, (key, title) in enumerate([("before", "before: 64 activations, 2 channels"),
                                      ("after", "after norm.batchnorm_forward (γ=1, β=0)")]):
        ax = fig.add_subplot(gs[0, i])
        a = n[key]
        ax.scatter(a[:, 0], a[:, 1], s=14, color=BLUE, alpha=0.75)
        mu, sd = a.mean(0), a.std(0)
        ax.add_patch(Rectangle((mu[0] - sd[0], mu[1] - sd[1]), 2 * sd[0], 2 * sd[1], fill=False,
                               edgecolor=RED, linewidth=1.5))
        ax.plot(*mu, "+", color=RED, markersize=12, markeredgewidth=2)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.axvline(0, color="0.8", lw=0.8, zorder=0)
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
        ax.set_xlabel("channel 0")
        ax.set_ylabel("channel 1")
        ax.set_title(title, fontsize=11)
        ax.text(0.03, 0.97, f"mean ({mu[0]:.2f}, {mu[1]:.2f})\nstd  ({sd[0]:.2f}, {sd[1]:.2f})\n"
                "box: mean ± std",
                transform=ax.transAxes, va="top", fontsize=9, color=RED, family="monospace")

    ax = fig.add_subplot(gs[0, 2])
    terms, m = n["terms"], n["terms"].shape[1]
    idx = np.arange(m)
    width = 0.26
    labels = ["k·dy_i   (the direct path)", "−k·dbeta/M   (through the mean)",
              "−k·xhat_i·dgamma/M   (through the variance)"]
    ax.plot(idx, n["dx"], "D", color="black", markersize=6, zorder=3, label="dx_i = their sum = batchnorm_backward's")
    for t, (colour, label) in enumerate(zip([BLUE, "#4daf4a", "#ff7f00"], labels)):
        ax.bar(idx + (t - 1) * width, terms[t], width, color=colour, label=label)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(idx, [f"{v:.1f}".replace("-0.0", "0.0") for v in n["xhat"]], fontsize=9)
    ax.set_xlabel("xhat_i of the 10 values of one channel (M = 10, γ = 1.5, k = γ/σ)")
    ax.set_title(f"dx_i = (γ/(Mσ)) (M dy_i − dbeta − xhat_i dgamma)\n"
                 f"with dbeta = Σ dy_i = {n['dbeta']:.2f},  dgamma = Σ dy_i xhat_i = {n['dgamma']:.2f}",
                 fontsize=10.5)
    ax.legend(fontsize=8.5, loc="lower left", frameon=False)
    lo, hi = min(terms.min(), n["dx"].min()), max(terms.max(), n["dx"].max())
    ax.set_ylim(lo - 0.75 * (hi - lo), hi + 0.08 * (hi - lo))
    return fig


# --------------------------------------------------------------------------------------------------
# 6. Log-softmax: the naive formula overflows, the shifted one does not; the loss's gradient is p - q.
# --------------------------------------------------------------------------------------------------

def log_softmax_numbers():
    t = np.linspace(0.0, 1000.0, 401)
    z = t[:, None] * np.array([1.0, 0.0, -1.0])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        naive = np.log(np.exp(z) / np.exp(z).sum(1, keepdims=True))
    stable, _ = loss.log_softmax_forward(z)
    assert np.isfinite(stable).all() and not np.isfinite(naive).all()

    logits = np.array([[2.0, 1.0, 0.1, -1.0]])
    labels = np.array([1])
    _, cache = loss.cross_entropy_forward(logits, labels)
    grad = loss.cross_entropy_backward(1.0, cache)[0]
    logp, _ = loss.log_softmax_forward(logits)
    p = np.exp(logp[0])
    q = np.eye(4)[1]
    assert np.allclose(grad, p - q)
    return {"t": t, "naive": naive, "stable": stable, "p": p, "q": q, "grad": grad}


@_styled
def log_softmax() -> Figure:
    n = log_softmax_numbers()
    fig = Figure(figsize=(12, 4.7), dpi=DPI)
    fig.suptitle("softmax cross-entropy: subtract the max before exp (left); the gradient is p − q (right)",
                 fontsize=12.5)
    gs = fig.add_gridspec(1, 2, width_ratios=[1.3, 1], left=0.08, right=0.98, bottom=0.14, top=0.8, wspace=0.2)
    ax = fig.add_subplot(gs[0, 0])
    t = n["t"]
    for k, colour in [(0, BLUE), (2, RED)]:
        ax.plot(t, n["stable"][:, k], color=colour, lw=2.5, alpha=0.45,
                label=f"log softmax(z)_{k}, loss.log_softmax_forward")
        ok = np.isfinite(n["naive"][:, k])
        ax.plot(t[ok], n["naive"][ok, k], "--", color=colour, lw=1.5,
                label=f"log(exp(z_{k}) / Σ exp(z_j)), computed literally")
        first_bad = np.argmin(ok)
        ax.plot(t[first_bad - 1], n["naive"][first_bad - 1, k], "x", color=colour, markersize=11, mew=2.5)
        bad = n["naive"][first_bad, k]
        ax.annotate(f"{'nan' if np.isnan(bad) else bad} from t = {t[first_bad]:.0f}",
                    (t[first_bad - 1], n["naive"][first_bad - 1, k]), textcoords="offset points",
                    xytext=(-10, -22) if k == 0 else (10, -16), ha="right" if k == 0 else "left",
                    fontsize=9.5, color=colour)
    ax.set_xlabel("t, with logits z = t · (1, 0, −1)")
    ax.set_ylabel("log-probability")
    ax.set_title("literally: exp(709.8) = inf gives nan, and a tiny ratio rounds to 0 (log 0 = −inf);\n"
                 "shifted by the max, every exponent is ≤ 0 and every value stays finite", fontsize=10.5)
    ax.legend(fontsize=8.5, loc="lower left", frameon=False)
    ax.set_xlim(0, 1000)

    ax = fig.add_subplot(gs[0, 1])
    idx = np.arange(4)
    width = 0.27
    ax.bar(idx - width, n["p"], width, color=BLUE, label="p = softmax(z)")
    ax.bar(idx, n["q"], width, color="0.6", label="q = one-hot(label 1)")
    ax.bar(idx + width, n["grad"], width, color=RED, label="dL/dz = cross_entropy_backward")
    for i in idx:
        ax.text(i + width, n["grad"][i] + (0.03 if n["grad"][i] >= 0 else -0.03), f"{n['grad'][i]:.2f}",
                ha="center", va="bottom" if n["grad"][i] >= 0 else "top", fontsize=9, color=RED)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(idx, [f"class {i}\nz = {z:g}" for i, z in enumerate([2.0, 1.0, 0.1, -1.0])], fontsize=9)
    ax.set_ylim(-1.05, 1.2)
    ax.set_title("one example, label 1: push z_1 up, the others down", fontsize=10.5)
    ax.legend(fontsize=8.5, loc="upper right", frameon=False)
    return fig


# --------------------------------------------------------------------------------------------------
# 7. The training loop: the loss of section 7's 30 steps.
# --------------------------------------------------------------------------------------------------

def stripes(rng, n):
    """Section 7's toy task: n noisy 8x8x3 images with horizontal (label 0) or vertical (label 1) stripes."""
    images = rng.standard_normal((n, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    stripe = np.arange(8) % 2
    images[labels == 0] += stripe[:, None, None]       # horizontal stripes: every other row
    images[labels == 1] += stripe[None, :, None]       # vertical stripes: every other column
    return images, labels


def training_numbers(steps=30):
    """Section 7's run, step by step: the loss and the batch's accuracy before each update, and the
    accuracy on 256 images the net never trained on (eval mode: batch norm's running statistics)."""
    images, labels = stripes(np.random.default_rng(0), 64)
    test_images, test_labels = stripes(np.random.default_rng(1), 256)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=0), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.GlobalAvgPool2d(), nn.Linear(8, 2, rng=1))
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    losses, accuracy, test_accuracy = [], [], []
    for _ in range(steps):
        opt.zero_grad()
        logits = net(sn.Tensor(images))
        L = F.cross_entropy(logits, labels)
        L.backward()
        opt.step()
        losses.append(L.item())
        accuracy.append(float((logits.numpy().argmax(1) == labels).mean()))
        net.eval()
        with sn.no_grad():
            test_accuracy.append(float((net(sn.Tensor(test_images)).numpy().argmax(1) == test_labels).mean()))
        net.train()
    return {"loss": np.array(losses), "accuracy": np.array(accuracy), "test_accuracy": np.array(test_accuracy)}


@_styled
def training_loss() -> Figure:
    n = training_numbers()
    steps = np.arange(len(n["loss"]))
    fig = Figure(figsize=(11, 4.0), dpi=DPI)
    fig.suptitle("section 7's loop on the stripes task: forward, cross-entropy, backward, SGD step "
                 "(lr 0.1, Nesterov momentum 0.9)", fontsize=12)
    gs = fig.add_gridspec(1, 2, left=0.07, right=0.98, bottom=0.15, top=0.84, wspace=0.22)
    ax = fig.add_subplot(gs[0, 0])
    ax.plot(steps, n["loss"], "o-", color=BLUE, markersize=4)
    ax.axhline(np.log(2), color="0.6", ls=":", lw=1)
    ax.text(steps[-1], np.log(2) + 0.01, "log 2: a coin toss", ha="right", va="bottom", fontsize=9, color="0.4")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss on the batch of 64")
    ax.set_title(f"loss {n['loss'][0]:.3f} → {n['loss'][-1]:.3f}", fontsize=11)
    ax.set_ylim(0, 0.8)
    ax = fig.add_subplot(gs[0, 1])
    ax.plot(steps, 100 * n["accuracy"], "o-", color=RED, markersize=4,
            label="the 64 training images (before each update)")
    ax.plot(steps, 100 * n["test_accuracy"], "s--", color="0.35", markersize=3.5,
            label="256 new images (after each update, eval mode)")
    ax.axhline(50, color="0.6", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_title("accuracy", fontsize=11)
    ax.legend(fontsize=9, loc="lower right", frameon=False)
    return fig


# --------------------------------------------------------------------------------------------------

FIGURES = {f.__name__: f for f in (autograd_graph, im2col, conv_backward, maxpool_routing, batchnorm,
                                   log_softmax, training_loss)}


def save(fig: Figure, path: Path) -> None:
    """Write a PNG whose bytes depend only on the figure and the matplotlib that drew it."""
    fig.savefig(path, dpi=DPI, facecolor="white",
                metadata={"Software": None, "Source": f"docs/figures.py, matplotlib {matplotlib.__version__}"})


def main(out_dir=OUT_DIR) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in FIGURES.items():
        path = out_dir / f"{name}.png"
        save(draw(), path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in main(*sys.argv[1:2]):
        print(p)
