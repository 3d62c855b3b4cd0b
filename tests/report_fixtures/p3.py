"""P3's fixture results for the report tests: synthetic P3Result / P3Comparison objects with every field a
trained run writes, written as the script writes them."""
from pathlib import Path

from problems.p3.result import AblationRow, FilterStats, Hyperparameters, LayerRow, P3Comparison, P3Result

from .common import _png


def result(model: str, losses: list, accs: list, **extra) -> P3Result:
    """A trained run of `model` with these per-epoch training losses and test accuracies."""
    n = len(losses)
    fields = dict(
        problem="p3", model=model, backend="numpy", device="cpu", epochs=n, train_loss=losses,
        train_accuracy=[0.3] * n, test_loss=[loss + 0.1 for loss in losses], test_accuracy=accs,
        final_test_accuracy_without_tta=None, epoch_seconds=[40.0] * n, images_per_second=[1250.0] * n,
        final_test_accuracy=accs[-1], final_test_error=1 - accs[-1], seconds=120.0, seconds_this_invocation=121.5,
        command=f"problems/p3_small_cnn.py --model {model}",
        hyperparameters=Hyperparameters(epochs=n, batch_size=128, lr=0.02, momentum=0.9, nesterov=True,
                                        weight_decay=0.0005, label_smoothing=0.0, schedule="onecycle",
                                        warmup_fraction=0.2, crop_padding=4, crop_mode="zero", flip=True,
                                        flip_mode="random", ema_decay=0.0, tta=0, eval_batch_size=1000, seed=0),
        optimizer="SGD, Nesterov momentum 0.9", schedule="one-cycle", augmentation="random crop",
        label_smoothing=0.0, weight_averaging="none", test_time_augmentation="none", normalisation="per-channel",
        initialisation="He normal", architecture=["conv 11x11, 3->64", "linear 128->10"], first_conv_padding=0,
        parameters=246026, data_source="JPEG copy (lossy)", data_dir="DATA/cifar10", n_train=50000, n_test=10000,
        weights_file="weights.npz",
        layers=[LayerRow(layer="conv1", type="Conv2d", output_shape=[22, 22, 64], parameters=23296,
                         fixed_weights=0, flops=22488576)],
        figures={"loss": "loss.png", "filters": "filters.png"}, discussion=f"The {model} network discussion.")
    fields.update(extra)
    return P3Result(**fields)


def better() -> P3Result:
    """Part 3 with its extras: the rationale and the ablation table."""
    return result("better", [1.2, 0.8], [0.80, 0.9312], parameters=1971352, final_test_accuracy_without_tta=0.925,
                  rationale=["whitened first layer", "EMA of the weights"], design_notes="docs/p3_better.md",
                  ablation=validation_ablation(), ablation_budget="4 epochs on 5000 images",
                  ablation_discussion="Dirac init matters most.", ablation_file="weights/p3_better_ablation.json",
                  ablation_evaluated_on="validation split (last 500 training images per class)",
                  figures={"loss": "loss.png", "filters": "filters.png", "accuracy_vs_time": "accuracy_vs_time.png"})


def validation_ablation(variant_accs=(0.60, 0.61), full_accs=(0.70, 0.71)) -> list:
    """Ablation rows as ablation_rows makes them: the full recipe and one variant, two seeds each."""
    def row(name, accs):
        return AblationRow(variant=name, validation_accuracy=sum(accs) / len(accs), note=f"removed: {name}",
                           seeds=len(accs), per_seed=list(accs), spread=max(accs) - min(accs))
    return [row("full", full_accs), row("no EMA", variant_accs)]


def filter_stats(roughness: float, grey: int, cosine: float | None = None) -> FilterStats:
    """Measured 11x11 filters: `roughness` their median (1 noise, 0 flat), `grey` greyscale ones of 64."""
    return FilterStats(fixed=False, n_filters=64, size=11, colour_share_median=0.3, colour_filters=64 - grey - 4,
                       grey_filters=grey, roughness_median=roughness, smooth_filters=int(64 * (1 - roughness)),
                       norm_min=0.8, norm_max=2.0, first_one_sign=False, init_cosine_median=cosine)


def twin_check(torch_minus_scratchnet=(0.01, -0.005, 0.004)):
    """The PyTorch cross-check of parts 1-2 over len(...) epochs, PyTorch ahead or behind by these amounts."""
    from problems.p3.twin_check import P3TwinCheck, TwinEpoch, TwinModel, discussion
    models = []
    for model, base in (("small", 0.40), ("small_bn", 0.50)):
        epochs = [TwinEpoch(epoch=i + 1, scratchnet_test_accuracy=base + 0.05 * i,
                            torch_test_accuracy=base + 0.05 * i + d, scratchnet_test_loss=1.5 - 0.1 * i,
                            torch_test_loss=1.5 - 0.1 * i) for i, d in enumerate(torch_minus_scratchnet)]
        models.append(TwinModel(model=model, schedule_epochs=15, scratchnet_file=f"weights/p3_{model}.json",
                                torch_file=f"results/p3/twin/{model}/results.json", torch_device="cpu",
                                epochs=epochs))
    return P3TwinCheck(problem="p3", part="PyTorch twin cross-check", data_source="JPEG copy (lossy)", n_train=50000,
                       n_test=10000, models=models, command="problems/p3_twin_check.py", discussion=discussion(models))


def comparison() -> P3Comparison:
    return P3Comparison(problem="p3", compared=["results/p3/small/results.json", "results/p3/small_bn/results.json"],
                        figures={"bn_comparison": "loss_bn_comparison.png"},
                        final_train_loss={"small": 1.2, "small_bn (batch norm)": 0.9},
                        discussion="Training loss per epoch.")


def bn_control(plain_high_diverged: bool = False):
    """The batch-norm control: both networks at 0.02 and 0.2; the diagonal cells are parts 1 and 2."""
    from problems.p3.bn_control import ControlCell, P3BNControl, discussion

    def cell(model, lr, role, errors, diverged=None):
        if diverged:
            return ControlCell(model=model, lr=lr, role=role, diverged=diverged, train_loss=[], test_loss=[],
                               test_accuracy=[], final_test_error=None, seconds=None, results_file="runs/x")
        return ControlCell(model=model, lr=lr, role=role, train_loss=[1.5, 1.0, 0.8], test_loss=[1.4, 1.1, 0.9],
                           test_accuracy=[1 - e for e in errors], final_test_error=errors[-1], seconds=100.0,
                           results_file="runs/x/results.json")
    cells = [cell("small", 0.02, "part 1 run", [0.5, 0.4, 0.30]),
             cell("small", 0.2, "control run", [0.6, 0.5, 0.35], "epoch 1, step 40" if plain_high_diverged else None),
             cell("small_bn", 0.02, "control run", [0.45, 0.35, 0.27]),
             cell("small_bn", 0.2, "part 2 run", [0.4, 0.3, 0.22])]
    return P3BNControl(problem="p3", part="batch-norm control", epochs=3, batch_size=128, seed=0, lrs=[0.02, 0.2],
                       data_source="JPEG copy (lossy)", cells=cells, command="problems/p3_bn_control.py",
                       figures={"bn_control": "bn_control.png"}, discussion=discussion(cells, [0.02, 0.2]))


def write(root: Path) -> None:
    """P3's results under root, as its script writes them (figures beside each JSON)."""
    p3 = root / "p3"
    runs = {"small": result("small", [2.0, 1.5, 1.2], [0.40, 0.50, 0.55], filter_stats=filter_stats(0.7, 4, 0.76)),
            "small_bn": result("small_bn", [1.6, 1.1, 0.9], [0.50, 0.60, 0.66],
                               filter_stats=filter_stats(0.25, 36, 0.16)),
            "better": better()}
    for model, r in runs.items():
        for name in r.figures.values():
            _png(p3 / model / name, *((96, 24) if name == "filters.png" else (60, 40) if name == "loss.png" else ()))
        r.write(p3 / model / "results.json")
    c = comparison()
    _png(p3 / c.figures["bn_comparison"])
    c.write(p3 / "comparison.json")
    ctl = bn_control()
    _png(p3 / "bn_control" / "bn_control.png", 120, 50)
    ctl.write(p3 / "bn_control" / "results.json")
    twin_check().write(p3 / "twin_check" / "results.json")
