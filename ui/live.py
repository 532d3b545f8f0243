"""Read-only views of training events (dicts from Job.events() or Run.events()) for the pages."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inspector import Job, Run


def job_events(job: Job) -> list[dict]:
    return [event.to_dict() for event in job.events()]


def run_events(run_dir: str | Path, jobs: list[Job] = ()) -> list[dict]:
    """Events of a run: from the live job when this process trains it, else from metrics.jsonl."""
    for job in jobs:
        if job.run_dir is not None and Path(job.run_dir) == Path(run_dir):
            return job_events(job)
    return Run(run_dir).events()


def epochs(events: list[dict], fold: str | None = "final") -> list[dict]:
    """EpochEnd events of one fold ("final" = the kept model; None = every fold)."""
    return [e for e in events if e.get("event") == "EpochEnd" and (fold is None or e.get("fold") == fold)]


def folds(events: list[dict]) -> list[str]:
    return sorted({e.get("fold", "final") for e in epochs(events, None)} - {"final"},
                  key=lambda f: int(f.split("/")[0]))


@dataclass(frozen=True)
class Progress:
    fraction: float
    text: str
    images_per_s: float | None = None
    eta_s: float | None = None
    device: str | None = None
    memory_mb: float | None = None


def progress(events: list[dict]) -> Progress:
    """Where a training stands, in words, from its events so far."""
    start = next((e for e in events if e.get("event") == "TrainStart"), None)
    if start is None:
        return Progress(0.0, "Preparing: reading images and building the model...")
    device = start.get("device")
    last = next((e for e in reversed(events) if e.get("event") in ("StepEnd", "EpochEnd")), None)
    if last is None:
        return Progress(0.0, "Started.", device=device)
    fold = last.get("fold", "final")
    if last["event"] == "StepEnd":
        done = last["step"] / max(last["steps"], 1)
        what = "Extracting features" if last["phase"] == "features" else f"Epoch {last['epoch']}"
        text = f"{what}: batch {last['step']} of {last['steps']}"
        epoch_fraction = 0.0 if last["phase"] == "features" else done
    else:
        epoch_fraction = 1.0
        text = f"Epoch {last['epoch']} of {last['epochs']}"
    total = max(last.get("epochs") or start.get("epochs") or 1, 1)
    if last["event"] == "EpochEnd":
        within = last["epoch"] / total
    elif last["phase"] == "features":  # one bar per pass over the images (plain, then augmented views)
        within = done
    else:
        within = (last["epoch"] - 1 + epoch_fraction) / total
    if fold != "final":
        k, n = (int(x) for x in fold.split("/"))
        fraction = (k - 1 + within) / n
        text = f"Cross-validation fold {k} of {n} (estimating accuracy; the model is already saved). {text}"
    else:
        fraction = within
    eta = last.get("eta_s") if last["event"] == "EpochEnd" and fold == "final" else None
    return Progress(min(max(fraction, 0.0), 1.0), text, last.get("images_per_s"), eta, device,
                    last.get("device_memory_mb"))


def final_event(events: list[dict]) -> dict | None:
    return next((e for e in reversed(events) if e.get("event") in ("TrainEnd", "TrainFailed")), None)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
