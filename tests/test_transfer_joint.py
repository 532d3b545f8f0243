"""The joint objective's fine-tuning strategies (inspector/tasks/classification/transfer/joint.py): MK-MMD and
DANN's pieces on their own, then a short run of each with another line's images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector import TrainConfig, train
from inspector.engine import EpochEnd
from inspector.engine.events import event_from_dict
from inspector.errors import InspectorError
from inspector.tasks.classification.strategies import is_transfer
from inspector.tasks.classification.transfer.joint import dann_ramp, mk_mmd, reverse_gradient

FAST = dict(image_size=96, seed=3, epochs=2, batch_size=8, cross_validate=False)


def camera_b(image: np.ndarray) -> np.ndarray:
    """The shift a second camera makes (as tests/test_strategy_contract.py's): darker, lower contrast, softer,
    noisier."""
    from PIL import Image, ImageFilter

    soft = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.2)), dtype=np.float64)
    noise = np.random.default_rng(int(image.sum()) % 2**32).normal(0, 4, image.shape)
    return np.clip(0.6 * soft + 20 + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def line_b(tmp_path_factory) -> dict:
    """This line (the second camera): 4 labelled images per class and 6 unlabelled ones."""
    from PIL import Image

    from inspector.sample_data import render_image

    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("joint_line_b")
    (root / "unlabelled").mkdir()
    for label in ("crack", "ok", "scratch"):
        (root / "labelled" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "labelled" / label / f"{i}.png")
        for i in range(2):
            Image.fromarray(camera_b(render_image(label, rng))).save(root / "unlabelled" / f"{label}{i}.png")
    return {"data": root / "labelled", "unlabeled": root / "unlabelled"}


def test_mmd_of_identical_batches_is_zero_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    source = torch.from_numpy(rng.normal(size=(16, 32))).float()
    assert float(mk_mmd(source, source.clone())) == pytest.approx(0.0, abs=1e-6)
    same_distribution = torch.from_numpy(rng.normal(size=(16, 32))).float()
    figures = [float(mk_mmd(source, same_distribution + shift)) for shift in (0.0, 0.5, 2.0)]
    assert figures[0] < figures[1] < figures[2], figures
    # Float32 either way and differentiable: the features receive its gradient.
    shifted = (same_distribution + 1.0).requires_grad_()
    mk_mmd(source, shifted).backward()
    assert shifted.grad is not None and float(shifted.grad.abs().sum()) > 0


def test_the_gradient_reversal_layer_is_the_identity_forward_and_flips_gradients():
    x = torch.randn(4, 3, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * torch.arange(3.0).expand(4, 3))
    assert dann_ramp(0.0) == 0.0 and 0.99 < dann_ramp(1.0) <= 1.0 and dann_ramp(0.1) < dann_ramp(0.5)


@pytest.mark.parametrize("strategy", ["mk_mmd", "dann"])
def test_a_joint_run_trains_on_both_lines_and_reports_each_term(strategy, tiny_data, line_b, tmp_path):
    assert is_transfer(strategy)
    with pytest.raises(InspectorError, match="another line"):
        train(line_b["data"], TrainConfig(strategy=strategy, **FAST), runs_dir=tmp_path / "none")
    events: list = []
    result = train(line_b["data"], TrainConfig(strategy=strategy, **FAST), runs_dir=tmp_path, callbacks=[events.append],
                   source=tiny_data, unlabeled=line_b["unlabeled"])
    assert result.status == "completed" and (result.run_dir / "model.safetensors").is_file()
    epochs = [e for e in events if isinstance(e, EpochEnd) and e.fold == "final"]
    assert [e.epoch for e in epochs] == [1, 2]
    for e in epochs:
        assert set(e.terms) == {"L_s", "L_t", "D"}
        assert all(np.isfinite(v) and v >= 0 for v in e.terms.values())
        assert e.terms["L_s"] == pytest.approx(e.train_loss)
        assert event_from_dict(e.to_dict()).terms == e.terms  # survives metrics.jsonl
    transfer = result.summary.metrics["transfer"]
    assert transfer["method"] == strategy
    assert transfer["chosen_by"] in ("target_cv", "label_free_score")
    assert set(transfer["intervals"]) == {"source_only", "target_only", "adapted"}
    assert transfer["adapted"] is None and "validation" in transfer["reason"]


def test_old_epoch_events_without_terms_still_load():
    event = EpochEnd("r", epoch=1, epochs=2, train_loss=1.0, val_loss=None, val_accuracy=None, val_macro_f1=None,
                     lr=1e-3, images_per_s=1.0, elapsed_s=1.0, eta_s=1.0, device="cpu", device_memory_mb=None)
    data = event.to_dict()
    data.pop("terms")
    assert event_from_dict(data).terms is None


def test_the_live_curves_draw_each_term_when_the_epochs_report_them():
    from ui import charts

    def epoch(n: int, terms) -> EpochEnd:
        return EpochEnd("r", epoch=n, epochs=2, train_loss=1.0 / n, val_loss=None, val_accuracy=None,
                        val_macro_f1=None, lr=1e-3, images_per_s=1.0, elapsed_s=1.0, eta_s=1.0, device="cpu",
                        device_memory_mb=None, terms=terms)

    joint = [epoch(n, {"L_s": 1.0 / n, "L_t": 0.8 / n, "D": 0.1 * n}) for n in (1, 2)]
    drawn = {t.hovertemplate.split(" %")[0] for t in charts.curves({"joint": joint}).data}
    assert {"L_s", "L_t", "D", "train loss"} <= drawn
    plain = {t.hovertemplate.split(" %")[0] for t in charts.curves({"plain": [epoch(n, None) for n in (1, 2)]}).data}
    assert not plain & {"L_s", "L_t", "D"}
