"""Progress of a whole run: its planned phases, measured speed, and an ETA from the first second.

A run is planned as a list of `Work` steps: a phase (one word of PHASES), a fold, a number of units
(images, batches, patches...) and each unit's cost in forward-pass equivalents (one image through the
backbone at inference). The tracker turns the units done into `Progress` events. The time left is
every remaining step's cost times the seconds per cost unit measured so far: for its phase once that
phase has run a while, else over the whole run, else a prior from the device and image size. So the
ETA starts from the plan and sharpens as the work goes.

Events go out on every phase change and at most every `interval_s` otherwise; callers advance per
image or per small chunk, so no phase goes quiet. An optional heartbeat thread repeats the state when
one unit runs long (a fine-tuning batch on a busy CPU) so that a page hears from the run every
`heartbeat_s`. The clock is injectable: tests drive the tracker with a fake one.
"""
from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .events import Event, Progress

# The phases of any run, with the words people read (the app, the CLI): one vocabulary everywhere.
PHASES: dict[str, str] = {
    "decoding": "Reading images",
    "features": "Extracting features",
    "head": "Fitting the classifier",
    "adaptation": "Comparing transfer methods",
    "training": "Training",
    "coreset": "Choosing bank patches",
    "calibration": "Calibrating the threshold",
    "bank": "Building the memory bank",
    "scoring": "Scoring the defect images",
    "evaluation": "Evaluating",
}

# Seconds per forward pass of tf_efficientnet_lite0 at 224 px (batch 8), measured on the 2-core CPU
# of the development machine while it was busy, and a conservative guess for a GPU. Only the first
# seconds of an ETA rest on it: measured speed replaces it as soon as work is done.
PRIOR_SECONDS_PER_PASS = {"cpu": 0.06, "cuda": 0.004, "mps": 0.01}


def prior_seconds_per_pass(device_type: str, image_size: int | None, params_m: float | None = None) -> float:
    """A first guess of the seconds one image takes through the backbone (refined by measurement):
    the lite0 figure scaled by the image side and, roughly, by the parameters (4.7 M for lite0)."""
    base = PRIOR_SECONDS_PER_PASS.get(device_type, PRIOR_SECONDS_PER_PASS["cpu"])
    # Small inputs do not get as cheap as their pixels: fixed costs per pass weigh more (the side, not its square).
    pixels = (image_size or 224) / 224
    size = math.sqrt(max(params_m, 1.0) / 4.7) if params_m else 1.0
    return base * pixels * size


@dataclass(frozen=True)
class Work:
    """One planned step: `total` units of `unit` in `phase` (and `fold`), each costing `cost`
    forward-pass equivalents."""

    phase: str
    total: float
    unit: str = "images"
    cost: float = 1.0
    fold: str = "final"

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; use one of {', '.join(PHASES)}")


class _Step:
    def __init__(self, work: Work) -> None:
        self.phase, self.unit, self.cost, self.fold = work.phase, work.unit, work.cost, work.fold
        self.total, self.done = float(work.total), 0.0

    def remaining_cost(self) -> float:
        return max(self.total - self.done, 0.0) * self.cost


class ProgressTracker:
    """Follows a run through its planned `Work` and emits `Progress` events.

    start(phase, fold=..., total=...) enters the next planned step of that phase and fold (steps
    skipped on the way, e.g. epochs after an early stop, count as done); advance(n) records n units
    done; finish() emits the last event (fraction 1). Thread-safe; `close()` stops the heartbeat.
    """

    def __init__(self, run_id: str, emit: Callable[[Event], None], plan: Sequence[Work] = (), *,
                 seconds_per_pass: float = PRIOR_SECONDS_PER_PASS["cpu"], clock: Callable[[], float] = time.monotonic,
                 interval_s: float = 0.5, heartbeat_s: float | None = None) -> None:
        self.run_id, self._emit_event, self._clock = run_id, emit, clock
        self.prior, self.interval_s, self.heartbeat_s = seconds_per_pass, interval_s, heartbeat_s
        self._steps = [_Step(w) for w in plan]
        self._index = -1
        self._lock = threading.RLock()
        self._started = self._last_tick = self._phase_started = clock()
        self._last_emit: float | None = None
        self._fraction = 0.0
        self._spent: dict[str, float] = defaultdict(float)  # seconds per phase
        self._measured: dict[str, float] = defaultdict(float)  # cost units done per phase, timed
        self._first: dict[str, tuple[float, float]] = {}  # (seconds, cost) at each phase's first report
        self._images_per_s: float | None = None
        self._last_images: float | None = None  # clock of the last advance that counted images
        self._detail: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if heartbeat_s:
            self._thread = threading.Thread(target=self._beat_loop, name=f"progress-{run_id}"[:60], daemon=True)
            self._thread.start()

    # -- recording work ---------------------------------------------------------------------
    @property
    def phase(self) -> str | None:
        return self._steps[self._index].phase if self._index >= 0 else None

    def start(self, phase: str, *, fold: str = "final", total: float | None = None, unit: str | None = None,
              detail: dict[str, Any] | None = None) -> None:
        """Enter the next planned step of `phase` in `fold` (an unplanned one is added, 1 pass per
        unit); `total` replaces the planned number of units (e.g. only the images not cached)."""
        with self._lock:
            self._tick()
            j = next((i for i in range(self._index + 1, len(self._steps))
                      if self._steps[i].phase == phase and self._steps[i].fold == fold), None)
            if j is None:
                j = self._index + 1
                self._steps.insert(j, _Step(Work(phase, total or 0, unit or "steps", 1.0, fold)))
            self._index = j
            step = self._steps[j]
            if total is not None:
                step.total = float(total)
            if unit is not None:
                step.unit = unit
            self._images_per_s, self._last_images = None, None  # rates of different phases do not mix
            self._phase_started = self._last_tick
            self._detail.update(detail or {})
            self._emit()

    def advance(self, n: float = 1, *, images: float | None = None, detail: dict[str, Any] | None = None,
                timed: bool = True) -> None:
        """n units of the current step are done. `images`: how many images they went through (for
        images/s; by default n when the unit is images). timed=False: units that took no real work
        (cached features), left out of the measured speed."""
        with self._lock:
            if self._index < 0:
                return
            now = self._tick()
            step = self._steps[self._index]
            n = min(float(n), max(step.total - step.done, 0.0))
            step.done += n
            if timed and n:
                self._measured[step.phase] += n * step.cost
                self._first.setdefault(step.phase, (self._spent[step.phase], self._measured[step.phase]))
            images = n if images is None and step.unit == "images" and timed else images
            if images:
                self._update_rate(images, now)
            self._detail.update(detail or {})
            if self._last_emit is None or now - self._last_emit >= self.interval_s:
                self._emit()

    def note(self, **detail: Any) -> None:
        """Figures a task shows live (JSON values), sent with the next event."""
        with self._lock:
            self._detail.update(detail)

    def finish(self) -> None:
        """The run is over: one last event with fraction 1 and no time left; stops the heartbeat."""
        with self._lock:
            self._tick()
            self._fraction = 1.0
            self._emit(final=True)
        self.close()

    def close(self) -> None:
        self._stop.set()

    # -- estimates --------------------------------------------------------------------------
    def seconds_per_cost(self, phase: str) -> float:
        """Seconds per forward-pass equivalent in `phase`: measured, shrunk toward the run's overall
        speed (and that toward the prior) by about one second of pseudo-observation each."""
        spent, measured = self._steady(phase)
        overall = (sum(self._spent.values()) + 1.0) / (sum(self._measured.values()) + 1.0 / self.prior)
        return (spent + 1.0) / (measured + 1.0 / overall)

    def _steady(self, phase: str) -> tuple[float, float]:
        """(seconds, cost) measured in `phase`, without its first report once twice as much work
        followed it: the first unit of a phase carries one-off costs (the first training batch on a
        busy CPU took 30 s, the next ones 3 s)."""
        spent, measured = self._spent.get(phase, 0.0), self._measured.get(phase, 0.0)
        first = self._first.get(phase)
        if first is not None and measured - first[1] >= 2 * first[1]:
            return spent - first[0], measured - first[1]
        return spent, measured

    def eta_s(self) -> float | None:
        """Seconds left for the whole run; None before anything is planned.

        Time under way since the last report counts as work partly done on the current step, and,
        once it is longer than one unit should take, as evidence that the phase is slower: the unit
        under way then counts as done at that moment (a lower bound), so a long silence raises the
        ETA instead of freezing it, without running away."""
        with self._lock:
            if not self._steps:
                return None
            rates = {phase: self.seconds_per_cost(phase) for phase in {s.phase for s in self._steps}}
            steps = self._steps[max(self._index, 0):]
            if self._index >= 0:
                step, in_flight = steps[0], self._clock() - self._last_tick
                spent, measured = self._steady(step.phase)
                pseudo = (spent + 1.0) / rates[step.phase] - measured  # the shrinkage's pseudo-cost
                rates[step.phase] = max(rates[step.phase],
                                        (spent + in_flight + 1.0) / (measured + step.cost + pseudo))
            left = sum(step.remaining_cost() * rates[step.phase] for step in steps)
            if self._index >= 0:
                left -= min(in_flight, steps[0].remaining_cost() * rates[steps[0].phase])
            return max(left, 0.0)

    # -- internals --------------------------------------------------------------------------
    def _tick(self) -> float:
        now = self._clock()
        if self._index >= 0:
            self._spent[self._steps[self._index].phase] += now - self._last_tick
        self._last_tick = now
        return now

    def _update_rate(self, images: float, now: float) -> None:
        """images/s smoothed over ~3 s (an exponential moving average in time)."""
        last, self._last_images = self._last_images, now
        if last is None:  # the first count of a phase: since the phase began
            last = self._phase_started
        dt = max(now - last, 1e-3)
        rate = images / dt
        weight = 1.0 - math.exp(-dt / 3.0)
        self._images_per_s = rate if self._images_per_s is None else self._images_per_s + weight * (rate - self._images_per_s)

    def _last_emit_or_start(self) -> float:
        return self._last_emit if self._last_emit is not None else self._started

    def _emit(self, final: bool = False) -> None:
        step = self._steps[self._index] if self._index >= 0 else _Step(Work("decoding", 0))
        now = self._clock()
        eta = 0.0 if final else self.eta_s()
        if not final and eta is not None:
            elapsed = now - self._started
            raw = elapsed / (elapsed + eta) if elapsed + eta > 0 else 0.0
            self._fraction = max(self._fraction, min(raw, 0.999))  # never back; 1 only at the end
        self._last_emit = now
        self._emit_event(Progress(self.run_id, phase=step.phase, done=step.done, total=step.total, unit=step.unit,
                                  fraction=round(self._fraction, 4), eta_s=None if eta is None else round(eta, 1),
                                  images_per_s=None if self._images_per_s is None else round(self._images_per_s, 2),
                                  fold=step.fold, detail=dict(self._detail)))

    def beat(self) -> None:
        """Repeat the state if nothing went out for `heartbeat_s` (the heartbeat thread calls it)."""
        with self._lock:
            if self._index >= 0 and self.heartbeat_s and self._clock() - self._last_emit_or_start() >= self.heartbeat_s:
                self._emit()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s / 4):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a broken callback must not kill the heartbeat's run
                pass


class _NoProgress:
    """The tracker a fit gets when nobody follows it (strategy tests, the evidence benchmarks)."""

    phase = None

    def start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass

    def note(self, **detail: Any) -> None:
        pass


NO_PROGRESS = _NoProgress()


def tracker_of(ctx: Any) -> ProgressTracker | _NoProgress:
    """The run's tracker from a FitContext (NO_PROGRESS when it has none)."""
    return getattr(ctx, "progress", None) or NO_PROGRESS
