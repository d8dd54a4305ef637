"""Canary and shadow deploys, judged on the servers' live traffic.

A **canary** (`modelci deploy REF --canary 10 --for 15m`): the canary tag (`prod-canary`) is moved to a record
naming REF and its share; the servers watching `prod` load it beside the stable model (verified and smoke-tested
as `prod`'s models are) and answer that share of the requests with it. Through the window, the canary's traffic
is compared with the stable model's on the servers' own metrics (`evidence`): it is rolled back at once when a
figure is worse beyond the rule at 99% confidence (many looks: a stricter interval than the final one), and at
the end promoted (a deploy of REF to `prod`, confirmed on its golden samples) when no figure is worse at 95%; a
canary that cannot be judged (too little traffic, an interval still too wide) is rolled back, not promoted.

A **shadow** (`modelci deploy REF --shadow --for 15m`): the shadow tag (`prod-shadow`) is moved to REF; the
servers score a copy of the requests with it, off the request path, and after the window the report says how
often it agreed with the stable model; the shadow tag then goes back to the stable model (which ends it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from modelci import atomic, github
from modelci.deploy import evidence, history
from modelci.deploy.evidence import Figure, Rule, Traffic
from modelci.deploy.rollout import deploy, deployable, failed_loads, has_line, metrics_text, refused_since
from modelci.errors import CheckFailed, UsageError
from modelci.registry import artifact, signature
from modelci.registry.records import push_record
from modelci.registry.reference import Reference
from modelci.serve.app import version_of
from modelci.serve.swap import CANARY, SHADOW

INTERIM = 0.99  # confidence of the looks during the window, at which a worse canary is rolled back at once
FINAL = 0.95  # confidence of the verdict at the end of the window
POLL_SECONDS = 5.0


@dataclass
class Verdict:
    decision: str  # promoted, rolled back
    reason: str
    canary: str
    stable: str
    requests: dict[str, float] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "canary": self.canary, "stable": self.stable,
                "requests": self.requests, "figures": [f.to_json() for f in self.figures]}


def canary(source: Reference, tag: str, servers: list[str], model: str, percent: float, window_s: float,
           rule: Rule, timeout_s: float, *, force: bool = False, verify: signature.Verifier | None = None,
           poll_s: float = POLL_SECONDS, report: Path | None = None) -> Verdict:
    """Run the canary of `source` against what `tag` names; promote it or roll it back (`CheckFailed`)."""
    descriptor, pinned = deployable(source, force=force, verify=verify)
    stable = _stable(source, tag, descriptor.digest, servers)
    for url in servers:
        evidence.scrape(url, model)  # NOTE: a server that cannot be judged is exit 2 before anything moves
    _serving(servers, model, stable, tag)
    record = source.with_tag(f"{tag}-{CANARY}")

    def end() -> None:
        push_record(record, [str(record.tag)], CANARY, {"model": descriptor.digest, "percent": "0",
                                                        "stable": stable})

    started = history.now()
    failed_before = {url: failed_loads(metrics_text(url)) for url in servers}
    push_record(record, [str(record.tag)], CANARY, {"model": descriptor.digest, "percent": f"{percent:g}",
                                                    "stable": stable})
    github.log(f"{record.tag}: {percent:g}% of the requests to {descriptor.digest}, against {tag} = {stable}")
    try:
        try:
            _wait_for_candidate(servers, model, descriptor.digest, CANARY, timeout_s, failed_before)
            verdict = _watch(servers, model, descriptor.digest, stable, window_s, rule, poll_s)
        except BaseException as exc:
            history.record(source.with_tag(tag), "refused", descriptor.digest, started=started, previous=stable,
                           how=CANARY, reason=getattr(exc, "message", None) or type(exc).__name__)
            raise
        now = artifact.resolve(source.with_tag(tag))
        if verdict.decision == "promoted" and (now is None or now.digest != stable):
            verdict.decision = "rolled back"
            verdict.reason = f"{tag} moved during the canary (to {now.digest if now else 'nothing'}): it was judged " \
                             "against a model no longer there"
        if verdict.decision == "promoted":
            try:
                deploy(pinned, tag, servers, model, timeout_s, force=True, verify=None, how=CANARY, started=started)
            except CheckFailed as failed:  # NOTE: the deploy wrote its refusal into the history
                verdict.decision, verdict.reason = "rolled back", f"the promotion failed: {failed.message}"
        else:
            history.record(source.with_tag(tag), "refused", descriptor.digest, started=started, previous=stable,
                           how=CANARY, reason=verdict.reason)
    finally:
        end()  # NOTE: promoted, rolled back, failed or interrupted: no server goes on answering with the canary
    _report(verdict, report)
    if verdict.decision != "promoted":
        raise CheckFailed(f"the canary {descriptor.digest} was rolled back: {verdict.reason}",
                          hint=f"this canary did not move {tag}; the report says what decided")
    return verdict


def shadow(source: Reference, tag: str, servers: list[str], model: str, window_s: float, timeout_s: float, *,
           force: bool = False, verify: signature.Verifier | None = None,
           report: Path | None = None) -> dict[str, Any]:
    """Move `tag`-shadow to `source`, wait until every server scores a copy of its requests with it; after
    `window_s` (when given), report its figures and end it."""
    descriptor, pinned = deployable(source, force=force, verify=verify)
    stable = _stable(source, tag, descriptor.digest, servers)
    target = source.with_tag(f"{tag}-{SHADOW}")

    def end() -> None:
        # NOTE: the model the tag names now as the shadow ends it (servers load nothing for it)
        now = artifact.resolve(source.with_tag(tag))
        artifact.promote(source.with_digest(now.digest if now else stable), [str(target.tag)])

    failed_before = {url: failed_loads(metrics_text(url)) for url in servers}
    artifact.promote(pinned, [str(target.tag)])
    try:
        _wait_for_candidate(servers, model, descriptor.digest, SHADOW, timeout_s, failed_before)
        if not window_s:
            return {"shadow": descriptor.digest, "stable": stable}
        time.sleep(window_s)
        found = _shadow_figures(servers, model, version_of(descriptor.digest))
    except BaseException:
        end()
        raise
    end()
    result = {"shadow": descriptor.digest, "stable": stable, **found}
    if report is not None:
        atomic.write_json(report, result)
    github.add_summary(_shadow_markdown(result))
    return result


def _stable(source: Reference, tag: str, digest: str, servers: list[str]) -> str:
    """The digest `tag` names, which the candidate is judged against; exit 2 when there is none to judge it
    against, or no server to judge it on."""
    if not servers:
        raise UsageError("a canary or shadow is judged on the servers' traffic: name them with --server")
    found = artifact.resolve(source.with_tag(tag))
    if found is None:
        raise UsageError(f"{source.with_tag(tag)} names no model to judge the candidate against",
                         hint=f"deploy a first model to {tag} without --canary or --shadow")
    if version_of(found.digest) == version_of(digest):  # NOTE: the servers' metrics tell models apart by version
        raise UsageError(f"{tag} already names {found.digest}" if found.digest == digest else
                         f"{digest} and {tag} = {found.digest} share the version {version_of(digest)}",
                         hint="a canary or shadow is a model other than the stable one")
    return found.digest


def _serving(servers: list[str], model: str, stable: str, tag: str) -> None:
    """`CheckFailed` unless every server serves `stable`: a canary is judged against the model the tag names, on
    each server."""
    wanted = version_of(stable)
    others = []
    for url in servers:
        try:
            versions = requests.get(f"{url}/v2/models/{model}", timeout=10).json().get("versions")
        except (requests.RequestException, ValueError):
            versions = None
        if versions != [wanted]:
            others.append(f"{url} ({', '.join(versions) if versions else 'no answer'})")
    if others:
        raise CheckFailed(f"{', '.join(others)} do not serve {tag} = {stable} ({wanted}), which the canary would be "
                          "judged against", hint=f"wait until every server serves {tag}, or name only those that do")


def _wait_for_candidate(servers: list[str], model: str, digest: str, role: str, timeout_s: float,
                        failed_before: dict[str, float]) -> None:
    """Until every server holds `digest` as its canary or shadow (`modelci_model_candidate_info`);
    `CheckFailed` when one refuses it or the time runs out."""
    waiting, deadline = list(servers), time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        exposition = {url: metrics_text(url) for url in waiting}  # NOTE: one read a look: refusal and candidate
        refused = [url for url, text in exposition.items() if refused_since(text, model, digest, failed_before[url])]
        if refused:
            raise CheckFailed(f"{', '.join(refused)} refused the {role} {digest}: it did not load, or did not "
                              "reproduce its golden samples", hint="the server's log says why")
        waiting = [url for url, text in exposition.items() if not has_line(
            text, "modelci_model_candidate_info{", f'digest="{digest}"', f'role="{role}"', f'model="{model}"')]
        if waiting:
            time.sleep(0.2)
    if waiting:
        raise CheckFailed(f"{', '.join(waiting)} did not load the {role} {digest} within {timeout_s:g} s",
                          hint="serve with --watch, following the tag the deploy moves; see the servers' logs")


def _watch(servers: list[str], model: str, digest: str, stable: str, window_s: float, rule: Rule,
           poll_s: float) -> Verdict:
    """Compare the canary's traffic with the stable model's through the window; the verdict."""
    ours, theirs = version_of(digest), version_of(stable)
    start = {url: evidence.scrape(url, model) for url in servers}
    began = time.monotonic()
    while True:
        time.sleep(max(0.0, min(poll_s, began + window_s - time.monotonic())))
        ended = time.monotonic() - began >= window_s
        try:
            canary_traffic, stable_traffic = _window(servers, model, start, ours, theirs)
        except _Restarted as restarted:
            return Verdict("rolled back", f"it cannot be judged: {restarted} restarted during the window (its "
                           "counters went back), so part of the evidence is gone", digest, stable)
        except UsageError as unread:  # NOTE: a server restarting, or a moment of network trouble: the next look
            if not ended:
                github.warning(f"a look at the canary's traffic failed, looking again: {unread.message}")
                continue
            return Verdict("rolled back", f"it cannot be judged: {unread.message}", digest, stable)
        figures = evidence.judge(canary_traffic, stable_traffic, rule, FINAL if ended else INTERIM)
        verdict = Verdict("rolled back", "", digest, stable,
                          {"canary": canary_traffic.requests, "stable": stable_traffic.requests}, figures)
        worse = [f for f in figures if f.worse]
        if worse:
            verdict.reason = f"{worse[0].name} is worse beyond its margin: " + _shown(worse[0])
            return verdict
        if ended:
            return _final(verdict, canary_traffic, rule)


def _final(verdict: Verdict, canary_traffic: Traffic, rule: Rule) -> Verdict:
    if canary_traffic.requests < rule.min_requests:
        verdict.reason = (f"it cannot be judged: the canary answered {canary_traffic.requests:g} requests in the "
                          f"window, fewer than the {rule.min_requests} a verdict needs")
        return verdict
    open_ = [f for f in verdict.figures if not f.not_worse]
    if open_:
        verdict.reason = (f"it cannot be judged: the interval of {open_[0].name} still reaches past its margin: "
                          + _shown(open_[0]))
        return verdict
    verdict.decision, verdict.reason = "promoted", "no figure is worse beyond its margin"
    return verdict


def _window(servers: list[str], model: str, start: dict[str, evidence.Scraped], ours: str,
            theirs: str) -> tuple[Traffic, Traffic]:
    """The canary's and the stable model's traffic since `start`, summed over the servers."""
    canary_traffic, stable_traffic = evidence.NONE, evidence.NONE
    for url in servers:
        scraped = evidence.scrape(url, model)
        now, before = scraped.versions, start[url].versions
        if scraped.started != start[url].started or \
                any(now.get(v, evidence.NONE).requests < before.get(v, evidence.NONE).requests for v in (ours, theirs)):
            raise _Restarted(url)
        canary_traffic += now.get(ours, evidence.NONE) - before.get(ours, evidence.NONE)
        stable_traffic += now.get(theirs, evidence.NONE) - before.get(theirs, evidence.NONE)
    return canary_traffic, stable_traffic


class _Restarted(Exception):
    """A server's counters went back: it restarted (a canary that crashed it loses the failures it caused)."""


def _shown(figure: Figure) -> str:
    each = "" if figure.unit == "distance" else f"canary {figure.canary:.4g}, stable {figure.stable:.4g}, "
    return (f"{each}difference {figure.difference:+.4g} (interval {figure.low:+.4g} to {figure.high:+.4g}; margin "
            f"{figure.margin:+.4g})")


def _report(verdict: Verdict, report: Path | None) -> None:
    lines = [f"### Canary {verdict.decision}", "", verdict.reason, "",
             f"Requests in the window: canary {verdict.requests.get('canary', 0):,.0f}, "
             f"stable {verdict.requests.get('stable', 0):,.0f}", "",
             "| figure | canary | stable | difference | interval | margin | |", "|---|---:|---:|---:|---|---:|---|"]
    for f in verdict.figures:
        mark = "worse" if f.worse else ("not worse" if f.not_worse else "undecided")
        each = ("—", "—") if f.unit == "distance" else (f"{f.canary:.4g}", f"{f.stable:.4g}")
        lines.append(f"| {f.name} | {each[0]} | {each[1]} | {f.difference:+.4g} | {f.low:+.4g} to {f.high:+.4g} | "
                     f"{f.margin:+.4g} | {mark} |")
    markdown = "\n".join(lines) + "\n"
    github.add_summary(markdown)
    for line in lines[2:]:
        if line:
            github.log(line)
    if report is not None:
        atomic.write_json(report, verdict.to_json())


def _shadow_figures(servers: list[str], model: str, version: str) -> dict[str, Any]:
    """The shadow's rows (scored, dropped, failed) and agreeing rows, summed over the servers."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {"scored": 0.0, "failed": 0.0, "dropped": 0.0, "sampled out": 0.0, "compared": 0.0,
                                "agreeing": 0.0}
    wanted: dict[str, Callable[[dict[str, str]], str | None]] = {  # NOTE: the sample's name → its total's key
        "modelci_shadow_rows_total": lambda labels: labels.get("outcome"),
        "modelci_shadow_compared_rows_total": lambda labels: "compared",
        "modelci_shadow_agreeing_rows_total": lambda labels: "agreeing"}
    for url in servers:
        for family in text_string_to_metric_families(metrics_text(url)):
            for sample in family.samples:
                key = wanted[sample.name](sample.labels) if sample.name in wanted else None
                if key in totals and sample.labels.get("model") == model and sample.labels.get("version") == version:
                    totals[key] += sample.value
    if not totals["compared"]:  # NOTE: none scored, or a regression model: no classes to agree on
        return {"rows": totals, "agreement": None, "agreement_interval": None}
    agreement = totals["agreeing"] / totals["compared"]
    return {"rows": totals, "agreement": agreement,
            "agreement_interval": list(evidence.wilson(agreement, totals["compared"], evidence.z_of(FINAL)))}


def _shadow_markdown(result: dict[str, Any]) -> str:
    rows, agreement = result["rows"], result["agreement"]
    if agreement is None:
        shown = "no classes were compared (no row was scored, or the model has none)"
    else:
        low, high = result["agreement_interval"]
        shown = f"{agreement:.2%} of the rows in the stable model's class (95% interval {low:.2%} to {high:.2%})"
    return (f"### Shadow {result['shadow']}\n\nAgainst {result['stable']}: {shown}; {rows['scored']:,.0f} rows "
            f"scored, {rows['sampled out']:,.0f} sampled out, {rows['dropped']:,.0f} dropped (its queue was full), "
            f"{rows['failed']:,.0f} failed.\n")
