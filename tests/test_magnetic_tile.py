"""Real defects: magnetic-tile, 10 training images per class, tested on held-out images."""
from __future__ import annotations

import numpy as np
import pytest

from inspector import Predictor, TrainConfig, train
from inspector.data import discover_dataset, stratified_holdout

# Measured (docs/BENCHMARKS.md): 0.773 / 0.781 / 0.714 held-out accuracy for seeds 0 / 1 / 2
# (this test is seed 0); chance is 1/6. The floor leaves room for CPU-kernel differences
# between machines and catches a real regression (the previous head scored 0.699 here).
FLOOR = 0.70


@pytest.mark.slow
def test_ten_images_per_class_classify_held_out_tiles(magnetic_tile, tmp_path):
    dataset = discover_dataset(magnetic_tile)
    assert len(dataset.classes) == 6 and not dataset.skipped
    labels = np.asarray(dataset.labels)
    train_idx, rest = stratified_holdout(labels, 10, seed=0)
    rng = np.random.default_rng(1000)
    test_idx = np.concatenate([rng.choice(rest[labels[rest] == c], min(50, (labels[rest] == c).sum()),
                                          replace=False) for c in range(6)])
    result = train(dataset.subset(train_idx), TrainConfig(seed=0), runs_dir=tmp_path)
    assert result.strategy == "linear_probe"  # auto, on a CPU with 10 images per class
    predictor = Predictor.from_run(result.run_dir)
    probs = predictor.predict_proba([dataset.samples[i].path for i in test_idx])
    truth = np.array([predictor.classes.index(dataset.samples[i].label) for i in test_idx])
    accuracy = float((probs.argmax(1) == truth).mean())
    print(f"magnetic-tile 10-shot held-out accuracy {accuracy:.3f} on {len(test_idx)} images")
    assert accuracy >= FLOOR
