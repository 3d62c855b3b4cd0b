"""Shared checks of the training loop (CPU and GPU tests use the same one)."""
import numpy as np
import pytest

from scratchnet.train import fit


class Interrupt(Exception):
    pass


def assert_resume_is_exact(make_learner, data, cfg, tmp_path, **fit_kwargs):
    """Train cfg.epochs straight; separately, stop after epoch 1 (an exception from the epoch log, as a
    Ctrl-C would) and resume from the checkpoint: the final weights must be bit-identical. fit_kwargs:
    a recipe's augment, final_views and settings."""
    straight = make_learner()
    fit(straight, data, cfg, out_dir=tmp_path / "a", progress=False, log=lambda s: None, **fit_kwargs)

    def stop_after_first_epoch(line):
        if line.startswith("epoch   1/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(make_learner(), data, cfg, out_dir=tmp_path / "b", progress=False, log=stop_after_first_epoch,
            **fit_kwargs)
    resumed = make_learner()
    hist = fit(resumed, data, cfg, out_dir=tmp_path / "b", resume=True, progress=False, log=lambda s: None,
               **fit_kwargs)
    assert len(hist.train_loss) == cfg.epochs
    a, b = straight.weights(), resumed.weights()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
