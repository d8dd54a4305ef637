"""`modelci delivery`: the release process's figures (DORA's four keys) for a model, from its tag's history in the
registry (`history`):

- **lead time**: from the commit a deployed model was built from (its artifact's created time, which modelci
  sets to the commit's time) to the deploy that put it on the tag: median and 90th percentile;
- **deploy frequency**: deploys that held, per week of the history;
- **change failure rate**: the changes that failed (refused, stopped, rolled back by a canary or a rolling deploy,
  or undone later by `modelci rollback`) over every change attempted;
- **time to restore**: for each failed change, from the change to the tag being back on a working model (the
  deploy's own move back, or the rollback).

What the history cannot tell is said, not guessed: a rollback whose deploy is not in the history (it began
before the history, or its record is missing) is counted as a failure without a time to restore; tags of the
history's form that are not deploy records are skipped, each named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from modelci.deploy.history import HISTORY, KIND
from modelci.errors import UsageError
from modelci.registry.records import list_records
from modelci.registry.reference import Reference

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Event:
    event: str  # deployed, refused, rolled-back
    model: str
    at: datetime
    started: datetime | None
    previous: str | None
    committed: datetime | None
    how: str
    reason: str

    @classmethod
    def of(cls, fields: dict[str, str]) -> Event:
        at = _time(fields["at"])
        if at is None:
            raise ValueError("a time")
        return cls(fields["event"], fields["model"], at, _time(fields.get("started")),
                   fields.get("previous"), _time(fields.get("committed")), fields.get("how", "deploy"),
                   fields.get("reason", ""))


@dataclass
class Delivery:
    repository: str
    tag: str
    first: datetime | None = None
    last: datetime | None = None
    deploys: int = 0
    attempts: int = 0
    failures: int = 0
    lead_times_s: list[float] = field(default_factory=list)
    restore_times_s: list[float] = field(default_factory=list)
    weeks: dict[str, tuple[int, int]] = field(default_factory=dict)  # monday → (deploys, failures)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        span_weeks = max((self.last - self.first) / WEEK, 1.0) if self.first and self.last else None
        return {
            "repository": self.repository, "tag": self.tag,
            "from": _iso(self.first), "to": _iso(self.last),
            "deploys": self.deploys, "attempts": self.attempts, "failures": self.failures,
            "lead_time_s": {"median": _quantile(self.lead_times_s, 0.5), "p90": _quantile(self.lead_times_s, 0.9),
                            "deploys": len(self.lead_times_s)},
            "deploys_per_week": self.deploys / span_weeks if span_weeks else None,
            "change_failure_rate": self.failures / self.attempts if self.attempts else None,
            "time_to_restore_s": {"median": _quantile(self.restore_times_s, 0.5),
                                  "p90": _quantile(self.restore_times_s, 0.9), "failures": len(self.restore_times_s)},
            "weeks": [{"week": week, "deploys": d, "failures": f} for week, (d, f) in sorted(self.weeks.items())],
            "notes": self.notes,
        }


def delivery(registry: Reference, tag: str, since: datetime | None = None) -> Delivery:
    """The figures of `tag` in `registry`, from its history (since `since`)."""
    if registry.path is not None and not registry.path.is_dir():
        raise UsageError(f"{registry}: no registry there", hint="name the registry the deploys moved the tag in")
    empty = registry.path is not None and not any(registry.path.iterdir())
    found, skipped = ([], []) if empty else list_records(registry, KIND, HISTORY.format(tag=tag))
    result = Delivery(str(registry), tag, notes=[f"skipped {note}" for note in skipped])
    events = []
    for fields in found:
        try:
            events.append(Event.of(fields))
        except (KeyError, ValueError) as exc:
            result.notes.append(f"skipped a deploy record without {exc}: {fields}")
    events = sorted((e for e in events if since is None or e.at >= since), key=lambda e: e.at)
    if not events:
        result.notes.append(f"no deploy of {tag} in the history" + (" since then" if since else ""))
        return result
    result.first, result.last = events[0].at, events[-1].at
    _count(result, events)
    return result


def _count(result: Delivery, events: list[Event]) -> None:
    held: list[Event] = []  # NOTE: the deploys that held, latest last: what a rollback undoes
    for event in events:
        week = (event.at - timedelta(days=event.at.weekday())).date().isoformat()
        deploys, failures = result.weeks.get(week, (0, 0))
        if event.event == "deployed":
            result.deploys, result.attempts = result.deploys + 1, result.attempts + 1
            held.append(event)
            result.weeks[week] = (deploys + 1, failures)
            if event.committed is not None:
                result.lead_times_s.append((event.at - event.committed).total_seconds())
        elif event.event == "refused":
            result.attempts, result.failures = result.attempts + 1, result.failures + 1
            result.weeks[week] = (deploys, failures + 1)
            if event.started is not None:
                result.restore_times_s.append((event.at - event.started).total_seconds())
        elif event.event == "rolled-back":
            undone = next((d for d in reversed(held) if d.model == event.previous), None)
            result.failures += 1
            result.weeks[week] = (deploys, failures + 1)
            if undone is None:
                result.notes.append(f"the rollback at {_iso(event.at)} undid {event.previous}, whose deploy is not in "
                                    "the history: counted as a failure, without a time to restore")
                result.attempts += 1
                continue
            held.remove(undone)
            result.restore_times_s.append((event.at - undone.at).total_seconds())
        else:
            result.notes.append(f"skipped an event of an unknown kind: {event.event} at {_iso(event.at)}")


def markdown(result: Delivery) -> str:
    """The figures as the release job's summary shows them: a table, and a Mermaid chart of the weeks."""
    found = result.to_json()
    lead, restore = found["lead_time_s"], found["time_to_restore_s"]
    rate, frequency = found["change_failure_rate"], found["deploys_per_week"]
    lines = [f"### Delivery of {result.tag} ({result.repository})", "",
             f"From {found['from'] or '–'} to {found['to'] or '–'}.", "",
             "| figure | value |", "|---|---|",
             f"| lead time, commit to {result.tag} | median {_duration(lead['median'])}, p90 {_duration(lead['p90'])} "
             f"({lead['deploys']} deploys) |",
             f"| deploy frequency | {'–' if frequency is None else f'{frequency:.2f}'} a week ({result.deploys} "
             "deploys) |",
             f"| change failure rate | {'–' if rate is None else f'{rate:.1%}'} ({result.failures} of "
             f"{result.attempts} changes) |",
             f"| time to restore | median {_duration(restore['median'])}, p90 {_duration(restore['p90'])} "
             f"({restore['failures']} failures) |"]
    if found["weeks"]:
        weeks = found["weeks"]
        top = max(max(w["deploys"], w["failures"]) for w in weeks)
        lines += ["", "```mermaid", "xychart-beta", '  title "Deploys (bars) and failed changes (line) a week"',
                  f'  x-axis [{", ".join(json.dumps(w["week"]) for w in weeks)}]',
                  f'  y-axis "changes" 0 --> {max(top, 1)}',
                  f'  bar [{", ".join(str(w["deploys"]) for w in weeks)}]',
                  f'  line [{", ".join(str(w["failures"]) for w in weeks)}]', "```"]
    lines += ["", *[f"- {note}" for note in result.notes]] if result.notes else []
    return "\n".join(lines) + "\n"


def prometheus(result: Delivery) -> str:
    """The figures in Prometheus' text format, for node_exporter's textfile collector (deploy/grafana)."""
    found = result.to_json()
    labels = f'repository="{_label(result.repository)}",tag="{_label(result.tag)}"'
    lines = []

    def family(name: str, kind: str, documentation: str, samples: dict[str, float | None]) -> None:
        lines.extend([f"# HELP {name} {documentation}", f"# TYPE {name} {kind}"])
        for suffix_and_extra, value in samples.items():
            suffix, _, extra = suffix_and_extra.partition("|")
            if value is not None:
                lines.append(f"{name}{suffix}{{{labels}{',' + extra if extra else ''}}} {value:g}")

    family("modelci_delivery_deploys_total", "counter", "Deploys of the tag that held.", {"": result.deploys})
    family("modelci_delivery_changes_total", "counter", "Changes of the tag attempted.", {"": result.attempts})
    family("modelci_delivery_failed_changes_total", "counter", "Changes that failed: refused, rolled back, or undone "
           "by a rollback.", {"": result.failures})
    family("modelci_delivery_deploys_per_week", "gauge", "Deploys that held, per week of the history.",
           {"": found["deploys_per_week"]})
    family("modelci_delivery_change_failure_ratio", "gauge", "Failed changes over changes attempted.",
           {"": found["change_failure_rate"]})
    for name, documentation, values in (
            ("modelci_delivery_lead_time_seconds", "From a deployed model's commit to its deploy.",
             result.lead_times_s),
            ("modelci_delivery_time_to_restore_seconds", "From a failed change to the tag back on a working model.",
             result.restore_times_s)):
        family(name, "summary", documentation, {'|quantile="0.5"': _quantile(values, 0.5),
                                                '|quantile="0.9"': _quantile(values, 0.9),
                                                "_sum": float(sum(values)), "_count": float(len(values))})
    return "\n".join(lines) + "\n"


def write(result: Delivery, out: Path) -> Path:
    from modelci import atomic

    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "delivery.json", result.to_json())
    return out / "delivery.json"


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _time(text: str | None) -> datetime | None:
    """An ISO time; one without a zone (a created annotation someone set by hand, say) is taken as UTC."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
