"""Build the homework report (report.html + report.pdf) from the problems' results folders.

    python report/build_report.py [--results DIR] [--out DIR] [--no-code] [--no-pdf]

Reads DIR (default results/): p1/, p2/, p3/{small,small_bn,better}/ + p3/comparison.json, p4/ (+
results_eot.json), p5/, and report_runs.json when make_report.py wrote one. Every number in the report is
read from those files; sentences that depend on a result are generated from it. A missing or failed part
shows a "not yet produced" box with the command that makes it. Jinja2 templates in report/templates/
give the HTML, WeasyPrint the PDF (A4, numbered pages, a code appendix).
"""
from __future__ import annotations

import argparse
import datetime
import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:          # run as a script: make problems/ and report/ importable
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from problems.common.cli import UserError, output_folder, portable_path, run_main  # noqa: E402
from scratchnet.io import atomic_write  # noqa: E402
from jobs import RESULT_FILES, hint_commands  # noqa: E402

DASH = "\u2014"

# result key -> the problem's result type: load_section reads each results file only through its
# from_json, which checks every field (a renamed field fails there, naming it) and returns the typed
# result the templates read. None: read as a plain JSON object (a problem not yet converted).
RESULT_TYPES = {
    "p1": None,
    "p2": None,
    "p3_small": None,
    "p3_small_bn": None,
    "p3_compare": None,
    "p3_better": None,
    "p4": None,
    "p4_eot": None,
    "p5": None,
}

# Code appendix: the code that answers each problem (paths relative to the repository).
CODE = [
    ("scratchnet core: autograd, kernels, layers, optimisers, training loop (P3, P5)",
     ["scratchnet/autograd.py", "scratchnet/kernels/conv.py", "scratchnet/kernels/pool.py",
      "scratchnet/kernels/norm.py", "scratchnet/kernels/loss.py", "scratchnet/functional.py", "scratchnet/nn.py",
      "scratchnet/optim.py", "scratchnet/train.py", "scratchnet/models.py"]),
    ("P1: pretrained CNN and feature maps",
     ["problems/p1_pretrained.py", "problems/common/pretrained.py", "problems/common/feature_maps.py"]),
    ("P2: transfer learning on Oxford-IIIT Pet",
     ["problems/p2_transfer.py", "problems/common/features.py", "problems/common/linear_probe.py"]),
    ("P3: CIFAR-10 networks trained with scratchnet", ["problems/p3_small_cnn.py", "scratchnet/data/augment.py"]),
    ("P4: adversarial examples",
     ["problems/p4_adversarial.py", "problems/common/adversarial.py", "problems/common/adversarial_figures.py"]),
    ("P5: the RNN adder", ["scratchnet/rnn.py", "problems/p5_rnn_adder.py", "problems/common/adder.py"]),
]
P5_DOC = REPO / "docs" / "p5_rnn_adder.md"
P5_DOC_STOP = "## Tests on top of the proof"     # the derivation ends here; later parts quote observed numbers


# ------------------------------------------------------------------------------------------- formatting
def _bad(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def fmt_pct(x, digits: int = 1) -> str:
    """A fraction as a percentage: 0.6756 -> '67.6%'."""
    return DASH if _bad(x) else f"{100 * float(x):.{digits}f}%"


def fmt_f(x, digits: int = 3) -> str:
    """A number with fixed decimals; missing or not finite -> a dash."""
    if _bad(x):
        return DASH
    if isinstance(x, (int, float)):
        return f"{float(x):.{digits}f}"
    return str(x)


def fmt_g(x) -> str:
    """A number in its shortest form (lr 0.02, eps 1)."""
    if _bad(x):
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:g}"
    return str(x)


def fmt_int(x) -> str:
    """An integer with thousands separators: 1048576 -> '1,048,576'."""
    return DASH if _bad(x) else f"{int(x):,}"


def fmt_sci(x) -> str:
    """Small probabilities: 3 decimals when >= 0.001, else scientific."""
    if _bad(x):
        return DASH
    return f"{x:.3f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


def fmt_vec(v, digits: int = 2) -> str:
    """A vector or matrix in brackets, numbers shortest-form (hand weights) or rounded (learned)."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_vec(e, digits) for e in v) + "]"
    if _bad(v):
        return DASH
    r = round(float(v), digits)
    return f"{r:g}" if r != int(r) or abs(r) > 1e6 else f"{int(r)}"


def fmt_text(x) -> str:
    """A results field meant as text: None -> dash, a list -> '; '-joined."""
    if x is None:
        return DASH
    if isinstance(x, (list, tuple)):
        return "; ".join(fmt_text(e) for e in x)
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def plural(n, word: str, many: str | None = None) -> str:
    return f"{fmt_int(n)} {word if n == 1 else (many or word + 's')}"


# ------------------------------------------------------------------------------------------- loading
class Section(dict):
    """One result: {'key', 'ok', 'data', 'path', 'figs', 'missing': {'command', 'error', 'note'}}."""


def read_run_log(results: Path) -> dict | None:
    """DIR/report_runs.json (make_report.py's record of its runs), or None when it is absent or not in that
    shape: the report then says the results came from running the scripts directly."""
    path = results / "report_runs.json"
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return None
    runs = log.get("runs") if isinstance(log, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("produces", []), list)
                                             for r in runs):
        return None
    return log


def _runs(results: Path) -> dict:
    by_key = {}
    for run in (read_run_log(results) or {}).get("runs", []):
        for key in run.get("produces", []):
            by_key[str(key)] = run
    return by_key


def resolve_figure(json_path: Path, value) -> Path | None:
    """A figure path from a results file: relative to the JSON's folder (the convention), else as written
    (absolute, or relative to the repository / working directory), else the file name next to the JSON."""
    if not value or not isinstance(value, str):
        return None
    p = Path(value)
    candidates = [p] if p.is_absolute() else [json_path.parent / p, REPO / p, Path.cwd() / p]
    candidates.append(json_path.parent / p.name)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return None


def load_section(results: Path, key: str, runs: dict, hints: dict) -> Section:
    """Read one results file; a missing, unreadable or failed-this-run result becomes a 'missing' section."""
    sec = Section(key=key, ok=False, data=None, path=None, figs={}, missing=None, stale=None, rel=None)
    command = hints.get(key, "make report")
    run = runs.get(key)
    path = next((results / f for f in RESULT_FILES[key] if (results / f).is_file()), None)
    if run and run.get("rc") not in (0, None):
        sec["missing"] = {"command": command, "error": run.get("error") or f"exit status {run.get('rc')}",
                          "note": f"the last run of this part failed (exit status {run.get('rc')})"}
        return sec
    if path is None:
        note = run.get("skip") if run else None
        sec["missing"] = {"command": command, "error": None, "note": note}
        return sec
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if RESULT_TYPES.get(key) is not None:
            data = RESULT_TYPES[key].from_json(data)
    except (ValueError, OSError) as e:  # ResultError is a ValueError
        rel = path.relative_to(results).as_posix()
        sec["missing"] = {"command": command, "error": f"{rel}: unreadable results file ({e})", "note": None}
        return sec
    sec.update(ok=True, data=data, path=path, rel=str(path.relative_to(results)))
    figs = data.get("figures") if isinstance(data, dict) else getattr(data, "figures", None)
    figs = figs if isinstance(figs, dict) else {}
    sec["figs"] = {role: resolve_figure(path, v) for role, v in figs.items()}
    if run and run.get("skip"):
        sec["stale"] = (f"not re-run this time ({run['skip']}); shown from the earlier results in "
                        f"{Path(sec['rel']).parent.as_posix()}/")
    return sec


# ------------------------------------------------------------------------------------------- derived text
def p1_facts(d: dict) -> dict:
    top = d.get("top") or []
    out = {"top": top, "sentence": None, "depths": []}
    if top:
        first = top[0]
        total = sum(t["prob"] for t in top)
        out["sentence"] = (f"{d['model']['name']} puts {first['name']} (class {first['class_id']}) first with "
                           f"probability {fmt_f(first['prob'])}; the top {len(top)} classes together hold "
                           f"{fmt_f(total)} of the probability mass"
                           + (f", and the runner-up, {top[1]['name']}, gets {fmt_f(top[1]['prob'])}."
                              if len(top) > 1 else "."))
    layers = d.get("layers") or {}
    for depth, layer in layers.items():
        maps = [m for m in d.get("feature_maps", []) if m.get("depth") == depth]
        shape = maps[0]["shape"] if maps else None
        out["depths"].append({"depth": depth, "layer": layer,
                              "shape": "x".join(str(s) for s in shape) if shape else DASH,
                              "channels": ", ".join(str(m["channel"]) for m in maps) or DASH})
    disc = d.get("discussion")
    out["discussion"] = ([(k, v) for k, v in disc.items()] if isinstance(disc, dict)
                         else [(None, disc)] if disc else [])
    return out


def p2_facts(d: dict) -> dict:
    classifiers = d.get("classifiers") or []
    out = {"classifiers": classifiers, "sentence": None, "compare": None}
    cov = d.get("coverage") or {}
    out["coverage"] = cov.get("text") if isinstance(cov, dict) else cov
    out["sentence"] = (f"With {d.get('classifier')} on the {fmt_int(d.get('feature_dim'))}-dimensional "
                       f"penultimate features of {d.get('model')}, the test mean-per-class accuracy is "
                       f"{fmt_pct(d.get('mean_per_class_accuracy'))} (overall accuracy {fmt_pct(d.get('accuracy'))}) "
                       f"over {out['coverage'] or DASH}.")
    scored = [c for c in classifiers if not _bad(c.get("mean_per_class_accuracy"))]
    if len(scored) > 1:
        best = max(scored, key=lambda c: c["mean_per_class_accuracy"])
        worst = min(scored, key=lambda c: c["mean_per_class_accuracy"])
        spread = best["mean_per_class_accuracy"] - worst["mean_per_class_accuracy"]
        out["compare"] = (f"On the same features {best['classifier']} scores highest "
                          f"({fmt_pct(best['mean_per_class_accuracy'])}) and {worst['classifier']} lowest "
                          f"({fmt_pct(worst['mean_per_class_accuracy'])}), a spread of "
                          f"{fmt_f(100 * spread, 1)} percentage points.")
    per_breed = d.get("per_breed") or {}
    ranked = sorted(((v.get("accuracy"), k, v) for k, v in per_breed.items() if not _bad(v.get("accuracy"))),
                    key=lambda t: (t[0], t[1]))
    out["weakest"] = [(k, v) for _, k, v in ranked[:5]]
    out["strongest"] = [(k, v) for _, k, v in ranked[::-1][:5]]
    out["n_breeds"] = len(per_breed)
    out["pairs"] = (d.get("most_confused_pairs") or [])[:6]
    out["backbones"] = d.get("backbones") or []
    ext = d.get("extraction") or {}
    out["from_cache"] = all(v.get("from_cache") for v in ext.values()) if ext else None
    return out


P3_HYPER = [("epochs", "epochs"), ("batch_size", "batch size"), ("lr", "peak learning rate"),
            ("momentum", "momentum"), ("weight_decay", "weight decay"), ("label_smoothing", "label smoothing"),
            ("seed", "seed")]


def p3_facts(d: dict) -> dict:
    hp = d.get("hyperparameters") or {}
    rows = [(label, fmt_g(hp[k])) for k, label in P3_HYPER if k in hp]
    for k, label in (("optimizer", "optimiser"), ("schedule", "schedule"), ("augmentation", "augmentation"),
                     ("weight_averaging", "weight averaging"), ("test_time_augmentation", "test-time augmentation"),
                     ("normalisation", "input normalisation")):
        if d.get(k) not in (None, ""):
            rows.append((label, fmt_text(d[k])))
    acc = d.get("test_accuracy") or []
    epochs = len(d.get("train_loss") or [])
    best = max(acc) if acc else None
    return {"hyper": rows, "epochs_run": epochs,
            "best_epoch_acc": best, "best_epoch": (acc.index(best) + 1) if acc else None,
            "minutes": (d.get("seconds") or 0) / 60 if not _bad(d.get("seconds")) else None,
            "eval_only": bool(d.get("eval_only"))}


def p3_bn_sentence(small: dict | None, bn: dict | None) -> str | None:
    """Compare the two part-1/2 networks from their results (loss after the same epochs, test accuracy)."""
    if not small or not bn:
        return None
    a, b = small.get("train_loss") or [], bn.get("train_loss") or []
    parts = []
    if a and b:
        n = min(len(a), len(b))
        la, lb = a[n - 1], b[n - 1]
        word = "lower" if lb < la else "higher" if lb > la else "the same"
        parts.append(f"After {plural(n, 'epoch')} the batch-norm network's training loss is {fmt_f(lb)}, "
                     f"{word} than the plain network's {fmt_f(la)}")
        reach = next((i + 1 for i, v in enumerate(b) if v <= a[n - 1]), None)
        if lb < la and reach is not None and reach < n:
            parts[-1] += f"; it is already below that final value after epoch {reach}"
    sa, sb = small.get("final_test_accuracy"), bn.get("final_test_accuracy")
    if not _bad(sa) and not _bad(sb):
        diff = 100 * (sb - sa)
        parts.append(f"its test accuracy is {fmt_pct(sb)} against {fmt_pct(sa)} "
                     f"({'+' if diff >= 0 else ''}{diff:.1f} percentage points)")
    if not parts:
        return None
    if len(parts) == 1 and not (a and b):
        return "The batch-norm network's " + parts[0][4:] + "."
    return parts[0] + (", and " + parts[1] if len(parts) > 1 else "") + "."


def p3_better_sentence(better: dict | None, small: dict | None, bn: dict | None) -> str | None:
    if not better or _bad(better.get("final_test_accuracy")):
        return None
    s = f"The part-3 network reaches {fmt_pct(better['final_test_accuracy'])} test accuracy"
    others = [(name, r["final_test_accuracy"]) for name, r in (("part 1", small), ("part 2", bn))
              if r and not _bad(r.get("final_test_accuracy"))]
    if others:
        s += ", against " + " and ".join(f"{fmt_pct(a)} for {n}" for n, a in others)
    params = [(n, r.get("parameters")) for n, r in (("it", better), ("part 1", small)) if r and r.get("parameters")]
    if len(params) == 2:
        s += f" ({fmt_int(params[0][1])} parameters against {fmt_int(params[1][1])})"
    return s + "."


def p4_table(entries: list) -> dict:
    """Transforms x images, with a generated sentence per transform saying whether it broke the attack."""
    names = [r["transform"] for r in entries[0]["robustness"]] if entries else []
    summary = []
    for name in names:
        rows = [r for e in entries for r in e["robustness"] if r["transform"] == name]
        kept = sum(bool(r["target_kept"]) for r in rows)
        n = len(rows)
        mean_p = sum(r["target_prob"] for r in rows) / n if n else None
        if name == "none":
            verdict = (f"the saved adversarial PNGs keep the target on {kept} of {n} images" if n else DASH)
        elif kept == 0:
            verdict = f"broke the attack on all {n} images (the target is no longer top-1)"
        elif kept == n:
            verdict = f"did not break the attack: the target stays top-1 on all {n} images"
        else:
            verdict = f"broke the attack on {n - kept} of {n} images; the target survives on {kept}"
        summary.append({"transform": name, "kept": kept, "n": n, "mean_p": mean_p, "verdict": verdict})
    tr = [s for s in summary if s["transform"] != "none"]
    broke = [s["transform"] for s in tr if s["kept"] == 0]
    held = [s["transform"] for s in tr if s["kept"] == s["n"]]
    partly = [s["transform"] for s in tr if 0 < s["kept"] < s["n"]]
    if not tr:
        overall = None
    elif len(broke) == len(tr):
        overall = f"Every transform ({', '.join(broke)}) broke every attack."
    elif len(held) == len(tr):
        overall = f"The target survived every transform ({', '.join(held)}) on every image."
    else:
        bits = []
        if broke:
            bits.append(f"{', '.join(broke)} broke the attack on every image")
        if partly:
            bits.append(f"{', '.join(partly)} broke it on some images only")
        if held:
            bits.append(f"the target survived {', '.join(held)} on every image")
        overall = "; ".join(bits)
        overall = overall[0].upper() + overall[1:] + "."
    return {"names": names, "summary": summary, "overall": overall}


def p4_eot_facts(d: dict) -> dict:
    entries = d.get("images") or []
    robust = [e for e in entries if all(r["target_kept"] for r in e["robustness"])]
    sentence = None
    if entries:
        sentence = (f"Expectation over transformation found a perturbation whose target survives all "
                    f"transforms for {len(robust)} of {len(entries)} images"
                    + (", at eps " + ", ".join(f"{fmt_g(e['eps'])}/255 ({e['target']['name']})" for e in robust)
                       if robust else "") + ".")
    return {"entries": entries, "sentence": sentence, "table": p4_table(entries)}


def p5_facts(d: dict) -> dict:
    randoms = d.get("random_checks") or []
    errors = (d.get("errors") or 0) + sum(r.get("errors", 0) for r in randoms)
    checked = (d.get("pairs_checked") or 0) + sum(r.get("pairs_checked", 0) for r in randoms)
    if errors == 0:
        verdict = (f"The hand-set network adds every one of the {fmt_int(checked)} tested pairs correctly")
    else:
        verdict = f"The hand-set network makes {fmt_int(errors)} errors on {fmt_int(checked)} tested pairs"
    proof = d.get("proof_all_lengths")
    if proof:
        verdict += (", and the reachable-state proof shows it adds correctly at every length "
                    f"(smallest |pre-activation| {fmt_g(d.get('min_margin'))}).")
    elif proof is False:
        verdict += f"; the all-lengths proof fails: {d.get('proof_reason') or 'no reason given'}."
    else:
        verdict += "."
    w = d.get("weights") or {}
    weights = [(k, fmt_vec(w[k])) for k in ("U", "W", "b_h", "v", "b_y", "h_0") if k in w]
    learn = None
    if d.get("learn_runs") is not None:
        runs = d["learn_runs"]
        perfect = [r for r in runs if r.get("perfect")]
        learned = d.get("learned") or {}
        lw = learned.get("weights") or d.get("learned_weights") or {}
        sentence = (f"Learning ({d.get('learn_method', 'surrogate')}) from random initialisation found a perfect "
                    f"adder (exhaustive {d.get('verified_bits')}-bit check and all-lengths proof) in "
                    f"{len(perfect)} of {len(runs)} seeds ({fmt_pct(d.get('success_rate'), 0)})")
        if perfect:
            sentence += ": seeds " + ", ".join(str(r["seed"]) for r in perfect)
        learn = {"runs": runs, "sentence": sentence + ".",
                 "weights": [(k, fmt_vec(w.get(k)), fmt_vec(lw.get(k))) for k in ("U", "W", "b_h", "v", "b_y", "h_0")
                             if k in lw],
                 "seed": learned.get("seed"), "margin": learned.get("min_margin"),
                 "states": learned.get("states")}
    return {"verdict": verdict, "weights": weights, "randoms": randoms, "learn": learn}


# ------------------------------------------------------------------------------------------- markdown
def markdown_to_html(text: str) -> str:
    """The Markdown subset the project's docs use: #-headings, paragraphs, indented/fenced code, pipe
    tables, '* '/'- ' lists, **bold**, *italic*, `code`."""
    def inline(s: str) -> str:
        s = html.escape(s, quote=False)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
        return s.replace("\\|", "|")

    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre class='math'>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
        elif line.startswith("    "):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            block = "\n".join(ln[4:] for ln in lines[i:j]).strip("\n")
            out.append("<pre class='math'>" + html.escape(block) + "</pre>")
            i = j
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)   # the doc's # is inside a report section
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            head = "".join(f"<th>{inline(c)}</th>" for c in rows[0]) if rows else ""
            body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f"<table class='data'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif re.match(r"\s*[*-] ", line):
            items = []
            while i < len(lines) and lines[i].strip():
                if re.match(r"\s*[*-] ", lines[i]):
                    items.append(re.sub(r"^\s*[*-] ", "", lines[i]))
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{inline(t)}</li>" for t in items) + "</ul>")
        else:
            para = []
            while (i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "    ", "```"))
                   and not lines[i].lstrip().startswith("|") and not re.match(r"\s*[*-] ", lines[i])):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def p5_derivation() -> str | None:
    """The derivation part of docs/p5_rnn_adder.md (its title dropped, stopping before observed results)."""
    if not P5_DOC.is_file():
        return None
    text = P5_DOC.read_text()
    text = text.split(P5_DOC_STOP)[0]
    text = "\n".join(text.splitlines()[1:]) if text.startswith("# ") else text
    return markdown_to_html(text)


# ------------------------------------------------------------------------------------------- code
def code_appendix(no_code: bool = False) -> list:
    """[(group title, [(path, line count, source text)])]; a file that does not exist is listed as such."""
    if no_code:
        return []
    groups = []
    for title, files in CODE:
        items = []
        for rel in files:
            p = REPO / rel
            src = p.read_text() if p.is_file() else None
            items.append({"path": rel, "lines": src.count("\n") + 1 if src else 0, "source": src})
        groups.append({"title": title, "files": items})
    return groups


def git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


# ------------------------------------------------------------------------------------------- render
def make_env():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=fmt_pct, f=fmt_f, g=fmt_g, int=fmt_int, sci=fmt_sci, vec=fmt_vec, text=fmt_text,
                       basename=lambda p: Path(str(p)).name)
    return env


def gather(results: Path, no_code: bool = False) -> dict:
    """Everything the templates need: one Section per result plus facts derived from them."""
    runs = _runs(results)
    hints = hint_commands(results)
    sec = {key: load_section(results, key, runs, hints) for key in RESULT_FILES}
    ctx = {"s": sec, "hints": hints, "results_dir": portable_path(results), "runs": None, "derivation": p5_derivation(),
           "code": code_appendix(no_code), "revision": git_revision(),
           "date": datetime.date.today().isoformat()}
    ctx["runs"] = read_run_log(results)
    return ctx


SECTIONS = [("p1", "P1. A pretrained CNN: classification and feature maps", "p1.html.j2"),
            ("p2", "P2. Transfer learning on Oxford-IIIT Pet", "p2.html.j2"),
            ("p3", "P3. Training CNNs on CIFAR-10 with scratchnet", "p3.html.j2"),
            ("p4", "P4. Adversarial examples", "p4.html.j2"),
            ("p5", "P5. A hard-threshold RNN that adds binary numbers", "p5.html.j2")]


def figure_src(out_dir: Path):
    """Template helper: a figure's path as the HTML in out_dir refers to it (relative, so the HTML also
    opens in a browser)."""
    def src(path):
        if path is None:
            return None
        return Path(os.path.relpath(path, out_dir)).as_posix()
    return src


TEXT_WIDTH_MM = 176          # A4 minus the page margins in style.css


def figure_width(max_height_mm: float = 205, max_width_mm: float = TEXT_WIDTH_MM):
    """Template helper: a CSS width for a figure that keeps its aspect ratio and fits both the text width and
    `max_height_mm` (CSS max-width + max-height together would stretch the image instead)."""
    def width(path, max_h=max_height_mm, max_w=max_width_mm):
        try:
            from PIL import Image
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - an unreadable image still gets a sane width
            return f"width: {max_w}mm"
        return f"width: {min(max_w, max_h * w / h):.1f}mm"
    return width


def glance(s: dict) -> list:
    """Cover-page rows (problem, headline result) generated from whatever results exist."""
    rows = []
    def ok(key):
        return s[key]["data"] if s[key]["ok"] else None
    d = ok("p1")
    if d and d.get("top"):
        t = d["top"][0]
        rows.append(("P1", f"{d['model']['name']}: top-1 {t['name']} (p = {fmt_f(t['prob'])})"))
    d = ok("p2")
    if d:
        cov = d.get("coverage") or {}
        rows.append(("P2", f"{d.get('classifier')} on {d.get('model')} features: mean-per-class accuracy "
                           f"{fmt_pct(d.get('mean_per_class_accuracy'))} over "
                           f"{cov.get('text') if isinstance(cov, dict) else cov}"))
    parts = [(label, ok(key)) for label, key in (("part 1", "p3_small"), ("part 2 (BN)", "p3_small_bn"),
                                                  ("part 3", "p3_better"))]
    parts = [f"{label} {fmt_pct(d.get('final_test_accuracy'), 2)}" for label, d in parts if d]
    if parts:
        rows.append(("P3", "CIFAR-10 test accuracy: " + ", ".join(parts)))
    d = ok("p4")
    if d and d.get("images"):
        n_ok = sum(bool(e.get("success")) for e in d["images"])
        t = p4_table(d["images"])
        broken = [x["transform"] for x in t["summary"] if x["transform"] != "none" and x["kept"] == 0]
        rows.append(("P4", f"{n_ok} of {len(d['images'])} targeted attacks succeeded at eps {fmt_g(d.get('eps'))}/255"
                           + (f"; broken by {', '.join(broken)} on every image" if broken else "")))
    e = ok("p4_eot")
    if e and e.get("images"):
        rows.append(("P4 EOT", p4_eot_facts(e)["sentence"]))
    d = ok("p5")
    if d:
        f = p5_facts(d)
        rows.append(("P5", f"hand-set adder: {fmt_int(d.get('errors'))} errors on {fmt_int(d.get('pairs_checked'))} "
                           f"pairs below 2^{d.get('verified_bits')}, all-lengths proof "
                           f"{'holds' if d.get('proof_all_lengths') else 'does not hold'}"
                           + (f"; learned: {sum(bool(r.get('perfect')) for r in f['learn']['runs'])} of "
                              f"{len(f['learn']['runs'])} seeds perfect" if f["learn"] else "")))
    return rows


def render_html(ctx: dict, out_dir: Path) -> str:
    """Render every section on its own, so one malformed results file costs one section, not the report."""
    env = make_env()
    helpers = dict(src=figure_src(out_dir), width=figure_width(), p1_facts=p1_facts, p2_facts=p2_facts, p3_facts=p3_facts,
                   p3_bn_sentence=p3_bn_sentence, p3_better_sentence=p3_better_sentence, p4_table=p4_table,
                   p4_eot_facts=p4_eot_facts, p5_facts=p5_facts, plural=plural)
    env.globals.update(helpers)
    bodies = []
    for key, title, template in SECTIONS:
        try:
            body = env.get_template(template).render(ctx, title=title, anchor=key)
        except Exception as e:  # noqa: BLE001 - any template/data error must only cost this section
            body = env.get_template("broken.html.j2").render(
                title=title, anchor=key, error=f"{type(e).__name__}: {e}")
        bodies.append({"key": key, "title": title, "html": body})
    try:
        rows = glance(ctx["s"])
    except Exception as e:  # noqa: BLE001 - the cover summary must never stop the report
        rows = [("note", f"summary unavailable ({type(e).__name__}: {e})")]
    return env.get_template("report.html.j2").render(ctx, sections=bodies, glance=rows)


def build(results: Path, out_dir: Path, no_code: bool = False, pdf: bool = True) -> dict:
    """Write out_dir/report.html (and report.pdf); returns {'html', 'pdf', 'pages'}."""
    results = Path(results).resolve()
    if not results.is_dir():
        raise UserError(f"results folder {results} does not exist; run the problems first "
                        "(python report/make_report.py) or pass --results DIR")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = gather(results, no_code)
    text = render_html(ctx, out_dir)
    html_path = out_dir / "report.html"
    atomic_write(html_path, lambda f: f.write(text), mode="w")
    out = {"html": html_path, "pdf": None, "pages": None}
    if pdf:
        import logging

        from weasyprint import HTML
        logging.getLogger("weasyprint").setLevel(logging.ERROR)   # font-subsetting chatter
        doc = HTML(string=text, base_url=str(out_dir)).render()
        pdf_path = out_dir / "report.pdf"
        atomic_write(pdf_path, doc.write_pdf)
        out.update(pdf=pdf_path, pages=len(doc.pages))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--results", type=Path, default=REPO / "results",
                   help="results root written by the problem scripts (default: results/)")
    p.add_argument("--out", type=output_folder, default=HERE, help="where report.html and report.pdf go (default: report/)")
    p.add_argument("--no-code", action="store_true", help="leave the code appendix out (quick previews, tests)")
    p.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    args = p.parse_args(argv)
    out = build(args.results, args.out, no_code=args.no_code, pdf=not args.no_pdf)
    print(f"wrote {out['html']}" + (f" and {out['pdf']} ({out['pages']} pages)" if out["pdf"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
