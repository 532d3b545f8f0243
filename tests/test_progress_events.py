"""Progress that never stalls (issue 20): the tracker's cadence on a fake clock, every planned phase of a
real linear-probe and anomaly training, a monotone fraction ending at 1, an ETA from the first event,
the event's round trip through metrics.jsonl, and the CLI's phase lines."""
from __future__ import annotations

import io
import json

import pytest

from inspector import TrainConfig, train
from inspector.engine.callbacks import ConsoleProgress
from inspector.engine.events import Progress, event_from_dict
from inspector.engine.progress import PHASES, ProgressTracker, Work
from inspector.tasks.base import create_task


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(tracker: ProgressTracker, clock: FakeClock, plan: list[tuple[Work, float]]) -> None:
    """Work through each step, one unit at a time, each unit taking the given fake seconds."""
    for work, seconds in plan:
        tracker.start(work.phase, fold=work.fold)
        for _ in range(int(work.total)):
            clock.now += seconds
            tracker.advance(1)
    tracker.finish()


def test_no_phase_goes_quiet_for_more_than_two_seconds_of_work():
    clock, seen = FakeClock(), []
    plan = [(Work("decoding", 50, cost=0.1), 0.02), (Work("features", 40, cost=8), 0.9),
            (Work("head", 12, "steps", cost=0.5), 0.05), (Work("training", 30, "batches", cost=48), 1.4),
            (Work("evaluation", 32, cost=8), 0.6)]
    tracker = ProgressTracker("r", lambda e: seen.append((clock.now, e)), [w for w, _ in plan],
                              seconds_per_pass=0.06, clock=clock, interval_s=0.5)
    _drive(tracker, clock, plan)
    for phase in ("decoding", "features", "head", "training", "evaluation"):
        times = [t for t, e in seen if e.phase == phase]
        assert times, phase
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps, default=0.0) <= 2.0, (phase, max(gaps))
    # throttled: within a phase, events at least interval_s apart (the last, fraction 1, excepted)
    same_phase = [(a, b) for (a, ea), (b, eb) in zip(seen, seen[1:-1]) if ea.phase == eb.phase]
    assert min(b - a for a, b in same_phase) >= 0.5
    assert len([e for _, e in seen if e.phase == "decoding"]) <= 3  # 50 quick images: no flood
    fractions = [e.fraction for _, e in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and seen[-1][1].eta_s == 0.0
    assert all(e.eta_s is not None for _, e in seen)


def test_eta_sharpens_from_the_plan_and_the_measured_speed():
    """The prior says 0.06 s per pass; the work really takes 0.12 s per pass: by a quarter of the run
    the ETA is within 25 % of the truth."""
    clock, seen = FakeClock(), []
    plan = [(Work("features", 100, cost=8), 8 * 0.12), (Work("evaluation", 32, cost=8), 8 * 0.12)]
    tracker = ProgressTracker("r", lambda e: seen.append((clock.now, e)), [w for w, _ in plan],
                              seconds_per_pass=0.06, clock=clock, interval_s=0.5)
    _drive(tracker, clock, plan)
    total = clock.now
    first = seen[0][1]
    assert first.eta_s == pytest.approx(132 * 8 * 0.06, rel=0.01)  # the plan at the prior speed
    t, event = next((t, e) for t, e in seen if t >= total / 4)
    assert abs(event.eta_s - (total - t)) / (total - t) < 0.25


def test_heartbeat_repeats_the_state_while_a_unit_runs_long_and_the_eta_rises():
    clock, seen = FakeClock(), []
    tracker = ProgressTracker("r", seen.append, [Work("training", 10, "batches", cost=48)],
                              seconds_per_pass=0.01, clock=clock, interval_s=0.5, heartbeat_s=2.0)
    tracker.close()  # no thread: beat() is called by hand on the fake clock
    tracker.start("training")
    clock.now = 1.0
    tracker.beat()
    assert len(seen) == 1  # not yet: nothing went out for less than 2 s
    clock.now = 2.5
    tracker.beat()
    clock.now = 30.0
    tracker.beat()
    assert len(seen) == 3 and seen[-1].done == 0 and seen[-1].eta_s > seen[1].eta_s  # slower than planned
    assert seen[-1].fraction >= seen[1].fraction


def test_skipped_steps_count_as_done_and_unplanned_ones_are_added():
    clock, seen = FakeClock(), []
    tracker = ProgressTracker("r", seen.append, [Work("training", 10, "batches"), Work("evaluation", 5)],
                              clock=clock)
    tracker.start("training")
    tracker.advance(3)  # early stopping: the 7 other batches never run
    tracker.start("evaluation")
    assert tracker.eta_s() == pytest.approx(5 * tracker.seconds_per_cost("evaluation"))
    tracker.start("scoring", total=2, unit="images")  # not planned: added where it happens
    assert seen[-1].phase == "scoring" and seen[-1].total == 2
    with pytest.raises(ValueError):
        Work("thinking", 1)


def test_progress_round_trips_through_metrics_jsonl():
    event = Progress("r", phase="coreset", done=16, total=400, unit="patches", fraction=0.4, eta_s=12.5,
                     images_per_s=None, fold="2/5", detail={"bank_size": 4096})
    back = event_from_dict(json.loads(json.dumps(event.to_dict())))
    assert back == event


def _phases(events, phase_of=lambda e: e.phase):
    return {phase_of(e) for e in events if isinstance(e, Progress)}


def _check_run(result, events) -> list[Progress]:
    progress = [e for e in events if isinstance(e, Progress)]
    assert result.status == "completed" and progress
    assert progress[0].eta_s is not None and progress[0].eta_s > 0  # an ETA from the very first event
    fractions = [e.fraction for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(e.phase in PHASES for e in progress)
    stored = [event_from_dict(json.loads(line)) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e for e in stored if isinstance(e, Progress)] == progress  # metrics.jsonl round-trips them
    return progress


def test_linear_probe_reports_every_planned_phase(tiny_data, tmp_path):
    events = []
    from inspector.engine.features import FeatureCache

    result = train(tiny_data, TrainConfig(strategy="linear_probe", image_size=128, seed=1, max_folds=3),
                   runs_dir=tmp_path, callbacks=[events.append],
                   feature_cache=FeatureCache())  # its own cache: features another test left are not reused
    progress = _check_run(result, events)
    assert _phases(progress) == {"decoding", "features", "head", "evaluation"}
    assert {e.fold for e in progress} == {"final", "1/3", "2/3", "3/3"}
    features = [e for e in progress if e.phase == "features" and e.fold == "final"]
    assert features[-1].total == 24 and features[-1].images_per_s  # per image counts, a smoothed rate
    figures = dict(create_task("classification").live_figures(events))
    assert figures == {"Val accuracy": f"{result.val_accuracy:.1%}"}


@pytest.fixture(scope="module")
def anomaly_events(tmp_path_factory):
    from inspector.sample_data import generate_sample_data

    data = generate_sample_data(tmp_path_factory.mktemp("parts"), seed=5, images_per_class=4, new_parts=0,
                                good_parts=8)
    import shutil

    for path in sorted((data / "good_parts" / "ok").iterdir()):
        shutil.copy(path, data / "train" / "ok" / f"extra_{path.name}")
    events = []
    result = train(data / "train", TrainConfig(task="anomaly", image_size=96, any_orientation=False, seed=0),
                   runs_dir=tmp_path_factory.mktemp("runs"), callbacks=[events.append])
    return result, events


def test_anomaly_reports_bank_building_coreset_and_calibration(anomaly_events):
    result, events = anomaly_events
    progress = _check_run(result, events)
    assert _phases(progress) == {"decoding", "features", "coreset", "calibration", "bank", "scoring", "evaluation"}
    assert {e.fold for e in progress if e.phase == "calibration"} == {f"{k}/5" for k in range(1, 6)}
    figures = dict(create_task("anomaly").live_figures(events))
    assert figures["Good images embedded"] == "12 of 12"
    assert figures["Memory bank"].endswith("patches") and "5% false rejects" in figures["Threshold"]
    assert not any("accuracy" in label.lower() for label in figures)


def test_console_names_the_phases_without_a_flood(anomaly_events):
    _, events = anomaly_events
    clock, out = FakeClock(), io.StringIO()
    console = ConsoleProgress(out, every_s=5.0, clock=clock)
    for event in events:
        console(event)
    lines = out.getvalue().splitlines()
    progress = [e for e in events if isinstance(e, Progress)]
    for phase in ("decoding", "features", "coreset", "calibration", "bank", "scoring"):
        assert any(line.startswith(f"  [{phase}] {PHASES[phase]}") and "left" in line for line in lines), phase
    # a line per phase (and fold) change; the fake clock never moves, so no repeats within one
    changes = sum(1 for a, b in zip([None, *progress], progress) if a is None or (a.phase, a.fold) != (b.phase, b.fold))
    assert len([line for line in lines if line.startswith("  [")]) <= changes
