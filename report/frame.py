"""The report's frame around the problems' answers: the cover's people, the "About the data" paragraph made
from the results, and the code shown in the PDF.

Code: each problem's section ends with function-level excerpts of its own code and of the scratchnet
functions that carry its method (EXCERPTS: file -> function, class or Class.method names, read with `ast`,
so an excerpt follows the code as it is). Appendix B lists every file of the code (CODE_FILES) with its
size; with --full-code it prints them whole, the library included.
"""
from __future__ import annotations

import ast
import html
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Per problem, the code that answers it: (file, [names]); a name is a top-level function or class, or
# "Class.method". The order is the order of reading: the problem's own code first, then the library's.
EXCERPTS = {
    "p1": [("problems/p1/run.py", ["run"]),
           ("problems/p1/feature_maps.py", ["record_activations", "select_channels", "normalise_map"]),
           ("problems/common/pretrained.py", ["predict_topk"])],
    "p2": [("problems/p2/penultimate.py", ["extract_features"]),
           ("problems/common/pretrained.py", ["penultimate_features"]),
           ("problems/p2/linear_probe.py", ["l2_normalize", "mean_per_class_accuracy", "cross_validate_C"]),
           ("problems/p2/run.py", ["evaluate"])],
    "p3": [("problems/p3/models.py", ["small_cnn", "better_net"]),
           ("scratchnet/kernels/conv.py", ["im2col", "conv2d_forward", "conv2d_backward", "conv_input_grad"]),
           ("scratchnet/kernels/pool.py", ["max_pool2d_forward", "max_pool2d_backward"]),
           ("scratchnet/kernels/norm.py", ["batchnorm_forward", "batchnorm_backward"]),
           ("scratchnet/kernels/loss.py", ["smoothed_targets", "cross_entropy_forward", "cross_entropy_backward"]),
           ("scratchnet/train.py", ["ScratchnetLearner.train_step"]),
           ("scratchnet/optim.py", ["SGD._update"])],
    "p4": [("problems/p4/attack.py", ["attack", "random_transforms", "robustness"])],
    "p5": [("scratchnet/rnn.py", ["HardThresholdRNN.cell", "HardThresholdRNN.forward"]),
           ("problems/p5/adder.py", ["encode_pairs", "add", "verify_exhaustive", "prove_all_lengths",
                                     "soft_forward", "train_adder"])],
}

# Appendix B: every file of the code, by group (paths relative to the repository).
CODE_FILES = [
    ("scratchnet core: autograd, kernels, layers, optimisers, training loop (P3, P5)",
     ["scratchnet/autograd.py", "scratchnet/kernels/conv.py", "scratchnet/kernels/pool.py",
      "scratchnet/kernels/norm.py", "scratchnet/kernels/loss.py", "scratchnet/functional.py", "scratchnet/nn.py",
      "scratchnet/optim.py", "scratchnet/train.py", "scratchnet/init.py", "scratchnet/rnn.py"]),
    ("P1: pretrained CNN and feature maps",
     ["problems/p1/cli.py", "problems/p1/run.py", "problems/p1/result.py", "problems/common/pretrained.py",
      "problems/p1/feature_maps.py"]),
    ("P2: transfer learning on Oxford-IIIT Pet",
     ["problems/p2/cli.py", "problems/p2/run.py", "problems/p2/result.py", "problems/p2/penultimate.py",
      "problems/p2/linear_probe.py"]),
    ("P3: CIFAR-10 networks trained with scratchnet",
     ["problems/p3/cli.py", "problems/p3/run.py", "problems/p3/result.py", "problems/p3/models.py",
      "problems/p3/recipe.py", "problems/p3/ablation.py", "problems/p3/twin_check.py",
      "problems/p3/torch_reference.py", "scratchnet/data/augment.py"]),
    ("P4: adversarial examples",
     ["problems/p4/cli.py", "problems/p4/run.py", "problems/p4/result.py", "problems/p4/attack.py",
      "problems/p4/figures.py", "problems/p4/study.py", "problems/p4/study_result.py", "problems/p4/study_cli.py"]),
    ("P5: the RNN adder", ["problems/p5/cli.py", "problems/p5/run.py", "problems/p5/result.py",
                           "problems/p5/adder.py"]),
]


# ------------------------------------------------------------------------------------------- people
def names(text) -> list[str]:
    """A comma- or semicolon-separated list of names (a list is taken as it is); blanks dropped."""
    if not text:
        return []
    items = text if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    return [" ".join(str(n).split()) for n in items if str(n).strip()]


def people(author, collaborators) -> dict:
    """The cover's two lines; never a name that was not given."""
    who = names(author)
    co = names(collaborators)
    return {"author": ", ".join(who) if who else "not given",
            "collaborators": ", ".join(co) if co else "none named",
            "author_given": bool(who), "collaborators_given": bool(co)}


# ------------------------------------------------------------------------------------------- code
def highlighter():
    """(highlight(source) -> HTML, CSS) with pygments, or a plain escape and no CSS when it is missing."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        return (lambda src: html.escape(src)), ""
    lexer, formatter = PythonLexer(), HtmlFormatter(nowrap=True, style="default")
    css = formatter.get_style_defs(".hl")
    return (lambda src: highlight(src, lexer, formatter)), css


def _definitions(tree) -> dict:
    """name -> node for top-level functions and classes, and 'Class.method' for their methods."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    out = {}
    for node in tree.body:
        if isinstance(node, kinds):
            out[node.name] = node
            if isinstance(node, ast.ClassDef):
                for child in node.body:
                    if isinstance(child, kinds):
                        out[f"{node.name}.{child.name}"] = child
    return out


def source_of(rel: str, name: str, repo: Path = REPO) -> dict:
    """{'path', 'name', 'first', 'last', 'source'} of one named function/class (decorators included), its
    lines dedented; source None (and a 'problem') when the file or the name is not there."""
    out = {"path": rel, "name": name, "first": None, "last": None, "source": None, "problem": None}
    path = repo / rel
    if not path.is_file():
        out["problem"] = "file not found"
        return out
    text = path.read_text(encoding="utf-8")
    node = _definitions(ast.parse(text)).get(name)
    if node is None:
        out["problem"] = f"no function or class {name} in this file"
        return out
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = text.splitlines()[first - 1:node.end_lineno]
    indent = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
    out.update(first=first, last=node.end_lineno, source="\n".join(ln[indent:] for ln in lines))
    return out


def excerpts(key: str, highlight=None, repo: Path = REPO) -> dict | None:
    """The code block ending problem `key`'s section: {'items': [excerpt + 'html'], 'files', 'lines'}."""
    spec = EXCERPTS.get(key)
    if not spec:
        return None
    highlight = highlight or highlighter()[0]
    items = []
    for rel, wanted in spec:
        for name in wanted:
            ex = source_of(rel, name, repo)
            ex["html"] = highlight(ex["source"]) if ex["source"] is not None else None
            items.append(ex)
    files = list(dict.fromkeys(rel for rel, _ in spec))
    shown = sum(ex["last"] - ex["first"] + 1 for ex in items if ex["source"] is not None)
    return {"items": items, "files": files, "lines": shown}


def code_files(full: bool, highlight=None, repo: Path = REPO) -> list:
    """Appendix B: [{'title', 'files': [{'path', 'lines', 'html' (full only), 'excerpted'}]}]."""
    if full:
        highlight = highlight or highlighter()[0]
    excerpted = {}
    for key, spec in EXCERPTS.items():
        for rel, wanted in spec:
            excerpted.setdefault(rel, []).extend(f"{n} ({key.upper()})" for n in wanted)
    groups = []
    for title, files in CODE_FILES:
        items = []
        for rel in files:
            p = repo / rel
            src = p.read_text(encoding="utf-8") if p.is_file() else None
            items.append({"path": rel, "lines": src.count("\n") + 1 if src else 0, "found": src is not None,
                          "excerpted": excerpted.get(rel, []),
                          "html": highlight(src) if (full and src is not None) else None})
        groups.append({"title": title, "files": items})
    return groups


# ------------------------------------------------------------------------------------------- data
def _field(data, name, default=None):
    return data.get(name, default) if isinstance(data, dict) else getattr(data, name, default)


def data_notes(sections: dict) -> list[dict]:
    """The caveats about the data sets, once, in plain words, from what the results record:
    [{'dataset', 'cite', 'text'}]; empty when the results record none."""
    notes = []
    p3 = [sections[k]["data"] for k in ("p3_small", "p3_small_bn", "p3_better")
          if k in sections and sections[k]["ok"]]
    lossy = [d for d in p3 if "lossy" in str(_field(d, "data_source") or "").lower()
             or "jpeg" in str(_field(d, "data_source") or "").lower()]
    if lossy:
        n_test = next((_field(d, "n_test") for d in lossy if _field(d, "n_test")), None)
        n_train = next((_field(d, "n_train") for d in lossy if _field(d, "n_train")), None)
        sizes = ""
        if n_train and n_test:
            sizes = f" ({n_train:,} training and {n_test:,} test images, the full splits)"
        notes.append({"dataset": "cifar10", "text": (
            f"The CIFAR-10 images used in P3{sizes} are a copy in which every image was saved as a JPEG, a "
            "lossy format, rather than the original lossless release. The networks therefore train and test "
            "on images with small compression artefacts: the P3 accuracies hold for this copy and are not "
            "exactly comparable with published CIFAR-10 results.")})
    if "p2" in sections and sections["p2"]["ok"]:
        d = sections["p2"]["data"]
        mi = _field(d, "missing_images")
        tr, te = (_field(mi, "trainval"), _field(mi, "test")) if mi is not None else (None, None)
        if tr is not None and te is not None and (_field(te, "missing") or _field(tr, "missing")):
            affected = sorted(set(_field(te, "per_breed") or {}) | set(_field(tr, "per_breed") or {}))
            per_breed = _field(d, "per_breed") or {}
            counts = [_field(v, "n_test") for v in per_breed.values() if _field(v, "n_test")]
            span = f"; a breed has between {min(counts)} and {max(counts)} test images" if counts else ""
            notes.append({"dataset": "pets", "text": (
                f"The copy of Oxford-IIIT Pet used in P2 is incomplete: {_field(tr, 'present'):,} of the "
                f"{_field(tr, 'listed'):,} training (trainval) images and {_field(te, 'present'):,} of the "
                f"{_field(te, 'listed'):,} test images are present"
                + (f", the missing ones from {len(affected)} of the breeds" if affected else "")
                + f". P2 trains and tests on the present images only{span}. Its accuracies are measured on "
                "this smaller test set, so they carry more sampling error than they would on the full one.")})
    return sorted(notes, key=lambda n: n["dataset"] != "pets")     # in the order of the problems: P2, P3
