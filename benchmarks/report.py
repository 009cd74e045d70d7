"""Figures (a candidate against its baseline, both measured in the same invocation), the Markdown table and
the JSON results file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.measure import Series

Metric = Literal["time", "rss"]


@dataclass
class Figure:
    number: str  # "1a", "4 (1G)"...
    title: str
    candidate: Series
    baseline: Series
    goal: str  # as the issue states it
    metric: Metric = "time"
    max_ratio: float | None = None  # goal met when ratio <= max_ratio
    max_candidate: float | None = None  # goal met when the candidate's own value is at most this (s or bytes)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, side: Series) -> float:
        return side.median_s if self.metric == "time" else float(side.median_rss)

    @property
    def ratio(self) -> float:
        base = self.value(self.baseline)
        return self.value(self.candidate) / base if base else float("nan")

    @property
    def met(self) -> bool | None:
        checks = []
        if self.max_ratio is not None:
            checks.append(self.ratio <= self.max_ratio)
        if self.max_candidate is not None:
            checks.append(self.value(self.candidate) <= self.max_candidate)
        return all(checks) if checks else None

    def shown(self, side: Series) -> str:
        if self.metric == "time":
            return f"{side.median_s:.2f} s"
        return f"{side.median_rss / (1 << 20):.0f} MiB"

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.number,
            "title": self.title,
            "metric": self.metric,
            "candidate": self.candidate.as_dict(),
            "baseline": self.baseline.as_dict(),
            "ratio": round(self.ratio, 3),
            "goal": self.goal,
            "met": self.met,
            "notes": self.notes,
            **self.extra,
        }


@dataclass
class Skipped:
    number: str
    title: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"figure": self.number, "title": self.title, "skipped": self.reason}


def markdown(results: dict[str, Any], figures: list[Figure | Skipped]) -> str:
    machine = results["machine"]
    lines = [
        f"# Benchmarks {results['date']}",
        "",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB RAM, "
        f"kernel {machine['kernel']}, work dir on {machine['work_dir_fs']}",
        f"- Command: `{results['command']}`",
        f"- Medians of {results['config']['reps']} runs per side, baseline and candidate interleaved in the same "
        "invocation; ratio = candidate / baseline (lower is better).",
        "",
        "| # | Figure | Candidate | Baseline | Candidate | Baseline | Ratio | Goal | Met |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for figure in figures:
        if isinstance(figure, Skipped):
            lines.append(f"| {figure.number} | {figure.title} | skipped: {figure.reason} | | | | | | |")
            continue
        met = {True: "yes", False: "**no**", None: "-"}[figure.met]
        lines.append(
            f"| {figure.number} | {figure.title} | {figure.candidate.label} | {figure.baseline.label} | "
            f"{figure.shown(figure.candidate)} | {figure.shown(figure.baseline)} | {figure.ratio:.2f}x | "
            f"{figure.goal} | {met} |"
        )
    notes = [(f.number, note) for f in figures if isinstance(f, Figure) for note in f.notes]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {number}: {note}" for number, note in notes]
    return "\n".join(lines) + "\n"


def write(out_dir: Path, results: dict[str, Any], figures: list[Figure | Skipped]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["date"].replace(":", "").replace("-", "")[:15]
    results = {**results, "figures": [f.as_dict() for f in figures]}
    json_path = out_dir / f"{stamp}.json"
    md_path = out_dir / f"{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(markdown(results, figures))
    return json_path, md_path
