"""Deploy: move a tag (prod) to an artifact, by digest, and wait until every server watching it
serves that digest and answers its golden samples; otherwise move the tag back.

Once the servers confirm, the digest the tag named before is kept as the tag `<tag>-previous`, so
`modelci rollback` moves the tag back without anyone having written the old digest down; a deploy
the servers refuse moves the tag straight back itself.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import requests

from modelci import github
from modelci.deploy import history
from modelci.errors import CheckFailed, UsageError
from modelci.export.parity import SAMPLES_FILE, reproduces_samples
from modelci.registry import artifact, signature
from modelci.registry.layout import Descriptor
from modelci.registry.reference import Reference
from modelci.serve.app import version_of

PREVIOUS = "{tag}-previous"
# NOTE: the digest the last deploy or rollback that finished left the tag on. A tag that names another
# digest was moved by a deploy that never finished (kill -9 while it waited) or by hand: nothing
# confirmed it, and the next deploy or rollback says so and treats this digest as the one to go back to.
DEPLOYED = "{tag}-deployed"
VERDICT = f"{artifact.ANNOTATION_PREFIX}verdict"


def deploy(source: Reference, tag: str, servers: list[str], model: str, timeout_s: float, *,
           force: bool = False, verify: signature.Verifier | None = None, how: str = "deploy",
           started: str | None = None) -> str:
    """Move `tag` to the artifact `source` names and confirm it on `servers`; its digest. Roll back and
    raise `CheckFailed` when they do not confirm it within `timeout_s`; roll back and re-raise when
    interrupted (SIGINT, SIGTERM) while waiting.

    With `verify`, an artifact without a signature (or attestation) that verifies is refused before any tag
    moves, and the verdict that counts is the signed one (`signature.NotVerified`, exit 1).

    The outcome goes into the tag's history (`history`), as a deploy `how` (deploy, canary, rolling) that began at
    `started` (now)."""
    descriptor, pinned = deployable(source, force=force, verify=verify)
    target = source.with_tag(tag)
    before = _last_good(target)
    began, started = time.monotonic(), started or history.now()

    def refused_because(reason: str) -> None:
        history.record(target, "refused", descriptor.digest, started=started, previous=before, how=how,
                       reason=reason)

    failed_before = {url: failed_loads(metrics_text(url)) for url in servers}

    try:
        # NOTE: a signal during the move is held until the move is done, then raised in this block: the tag
        # never stays moved without the wait that confirms it
        with _signals_deferred():
            artifact.promote(pinned, [tag])
        github.log(f"{target} = {descriptor.digest}" + (f" (was {before})" if before else ""))
        samples = json.loads(artifact.read_file(pinned, SAMPLES_FILE) or b"null")
        waiting, refused = confirm(servers, model, descriptor.digest, samples, timeout_s, failed_before)
    except KeyboardInterrupt:  # NOTE: SIGTERM too (errors.Terminated)
        rolled = _move_back(target, before, descriptor.digest)
        github.error(f"deploy interrupted after {time.monotonic() - began:.0f} s of its {timeout_s:g} s timeout, "
                     f"before every server confirmed {descriptor.digest}; {rolled}")
        refused_because("interrupted")
        raise
    if waiting:
        rolled = _move_back(target, before, descriptor.digest)
        if refused:
            refused_because(f"{', '.join(refused)} refused it")
            raise CheckFailed(f"{', '.join(refused)} refused {descriptor.digest}: it did not load, or did not "
                              f"reproduce its golden samples; {rolled}", hint="the server's log says why")
        refused_because(f"{', '.join(waiting)} did not serve it in time")
        raise CheckFailed(f"{', '.join(waiting)} did not serve {descriptor.digest} and answer its golden samples "
                          f"within {timeout_s:g} s; {rolled}", hint="see the servers' logs for why")
    with _signals_deferred():
        if before is not None and before != descriptor.digest:
            # NOTE: kept only once the servers confirmed, so a refused deploy leaves the rollback target as it was
            artifact.promote(target.with_digest(before), [PREVIOUS.format(tag=tag)])
        artifact.promote(target.with_digest(descriptor.digest), [DEPLOYED.format(tag=tag)])
    if before != descriptor.digest:  # NOTE: a deploy of what the tag already names is no change
        history.record(target, "deployed", descriptor.digest, started=started, previous=before, how=how)
    return descriptor.digest


def rolling(source: Reference, tag: str, servers: list[str], model: str, timeout_s: float, batch: int, *,
            force: bool = False, verify: signature.Verifier | None = None) -> str:
    """Move `servers` to the artifact `source` names `batch` at a time, each batch confirmed on its golden samples
    before the next, then `tag`; its digest. A batch that does not confirm stops the roll: the servers moved so
    far go back to what `tag` names, which never moved (`CheckFailed`).

    The servers follow `tag`-rollout, a record of the model and the servers (by their --instance) moved to it so
    far; once `tag` names the model, the record lists none and every server follows `tag` again."""
    from modelci.registry.records import push_record
    from modelci.serve.swap import ROLLOUT

    descriptor, pinned = deployable(source, force=force, verify=verify)
    names = _instances(servers)
    record = source.with_tag(f"{tag}-{ROLLOUT}")
    samples = json.loads(artifact.read_file(pinned, SAMPLES_FILE) or b"null")

    def moved_to(urls: list[str]) -> None:
        with _signals_deferred():
            push_record(record, [str(record.tag)], ROLLOUT, {"model": descriptor.digest,
                                                             "instances": ",".join(names[url] for url in urls)})

    moved: list[str] = []
    started = history.now()
    try:
        for first in range(0, len(servers), batch):
            step = servers[first:first + batch]
            moved += step
            failed_before = {url: failed_loads(metrics_text(url)) for url in step}
            moved_to(moved)
            waiting, refused = confirm(step, model, descriptor.digest, samples, timeout_s, failed_before)
            if waiting:
                why = "refused it" if refused else \
                    f"did not serve it and answer its golden samples within {timeout_s:g} s"
                history.record(source.with_tag(tag), "refused", descriptor.digest, started=started, how="rolling",
                               reason=f"{', '.join(waiting)} {why}")
                raise CheckFailed(f"{', '.join(waiting)} {why}; the roll stopped, and the {len(moved)} server(s) "
                                  f"moved are back on what {tag} names", hint="the server's log says why")
            github.log(f"{len(moved)} of {len(servers)} servers serve {descriptor.digest}")
        deploy(pinned, tag, servers, model, timeout_s, force=True, how="rolling", started=started)
    except KeyboardInterrupt:  # NOTE: SIGTERM too; the deploy of the tag records its own interruption
        if len(moved) < len(servers):
            history.record(source.with_tag(tag), "refused", descriptor.digest, started=started, how="rolling",
                           reason="interrupted")
        raise
    finally:
        moved_to([])  # NOTE: done or stopped, every server follows the tag again
    return descriptor.digest


def _instances(servers: list[str]) -> dict[str, str]:
    """Each server's name (its --instance, from /metrics); exit 2 when one has none, or two share one."""
    if not servers:
        raise UsageError("a rolling deploy moves servers: name them with --server")
    names = {}
    for url in servers:
        try:
            text = requests.get(f"{url}/metrics", timeout=10).text
        except requests.RequestException as exc:
            raise UsageError(f"{url}/metrics could not be read: {exc}",
                             hint="name servers `modelci serve` runs") from None
        found = re.search(r'^modelci_server_info\{server_name="([^"]*)"\}', text, re.MULTILINE)
        if found is None or not found.group(1):
            raise UsageError(f"{url} does not say its name (modelci_server_info), which a rolling deploy moves it "
                             "by", hint="serve with a modelci that does, and --instance")
        names[url] = found.group(1)
    shared = sorted({name for name in names.values() if list(names.values()).count(name) > 1})
    if shared:
        raise UsageError(f"servers share the name {', '.join(shared)}: a rolling deploy could not move one alone",
                         hint="give each server its own --instance (the host name by default)")
    return names


def deployable(source: Reference, *, force: bool, verify: signature.Verifier | None) -> tuple[Descriptor, Reference]:
    """The artifact `source` names, and the reference pinned to its digest, once its gate verdict (the signed one,
    with `verify`) says passed; `CheckFailed` otherwise, unless `force`."""
    descriptor = artifact.resolve(source)
    if descriptor is None:
        raise UsageError(f"{source}: no such artifact", hint="check the tag or digest")
    pinned = source.with_digest(descriptor.digest)
    if verify is not None:
        verdict, whose = verify(pinned).verdict, "signed verdict"
        github.log(f"{pinned}: its signature verifies")
    else:
        verdict, whose = artifact.annotations_of(pinned).get(VERDICT), "verdict"
    if verdict != "passed" and not force:
        raise CheckFailed(f"{source} = {descriptor.digest} did not pass the gate ({whose}: {verdict or 'none'}); "
                          "it is not deployed", hint="deploy an artifact main published, or pass --force")
    return descriptor, pinned


def rollback(registry: Reference, tag: str) -> str:
    """Move `tag` back to `<tag>-previous`, or to the digest the last finished deploy left it on when a
    deploy stopped before its servers confirmed; the digest it names now."""
    target = registry.with_tag(tag)
    current, last_good = artifact.resolve(target), _last_good(target)
    if current is not None and last_good is not None and current.digest != last_good:
        goal = last_good  # NOTE: _last_good said which unconfirmed move this undoes
    else:
        previous = artifact.resolve(registry.with_tag(PREVIOUS.format(tag=tag)))
        if previous is None:
            raise UsageError(f"{target}: no {PREVIOUS.format(tag=tag)} to roll back to",
                             hint="a deploy keeps the digest it replaces there; none has yet")
        goal = previous.digest
    with _signals_deferred():
        artifact.promote(registry.with_digest(goal), [tag, DEPLOYED.format(tag=tag)])
    _end_candidates(registry, tag)
    if current is not None and current.digest != goal:  # NOTE: a second rollback changes nothing
        history.record(target, "rolled-back", goal, previous=current.digest, how="rollback")
    return goal


def _end_candidates(registry: Reference, tag: str) -> None:
    """End a canary or a rolling deploy that a killed deploy left going (its record still naming a model with
    servers or a share): a rollback puts every server back on the tag."""
    from modelci.registry.records import push_record, read_record
    from modelci.serve.swap import CANARY, ROLLOUT

    for kind, field, off in ((CANARY, "percent", "0"), (ROLLOUT, "instances", "")):
        reference = registry.with_tag(f"{tag}-{kind}")
        fields = read_record(reference, kind)
        if fields is not None and fields.get(field, off) not in (off, "0"):
            push_record(reference, [str(reference.tag)], kind, {**fields, field: off})
            github.warning(f"{reference} was still going (a deploy was killed?): ended")


def _last_good(target: Reference) -> str | None:
    """The digest a deploy to `target` goes back to: what the tag names, unless a deploy that never finished
    (or a move by hand) put it there, when it is the digest the last finished deploy left (and a warning)."""
    current = artifact.resolve(target)
    deployed = artifact.resolve(target.with_tag(DEPLOYED.format(tag=target.tag)))
    if current is None or deployed is None or current.digest == deployed.digest:
        return current.digest if current else None
    github.warning(f"{target} names {current.digest}, which no server confirmed: the deploy that moved it there "
                   f"did not finish (it was killed), or it was moved by hand; the last deploy that finished left "
                   f"it on {deployed.digest}, which is what it goes back to")
    return deployed.digest


def _move_back(target: Reference, before: str | None, digest: str) -> str:
    """Move `target` back to `before` (never interrupted half-way); what happened, for the message."""
    if before is None:
        return f"there was no earlier {target.tag} to go back to"
    if before == digest:
        return f"{target.tag} named it before this deploy too, and still does"
    with _signals_deferred():
        artifact.promote(target.with_digest(before), [str(target.tag)])
    return f"{target.tag} is back on {before}"


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until a tag move is done: a second Ctrl-C must not stop a move back half-way."""
    if threading.current_thread() is not threading.main_thread():
        yield  # NOTE: handlers can be set from the main thread only
        return
    received: list[int] = []
    handlers = {number: signal.signal(number, lambda n, _frame: received.append(n))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        for first in received[:1]:
            signal.raise_signal(first)  # NOTE: now handled as it would have been, once the move is done


def confirm(servers: list[str], model: str, digest: str, samples: Any, timeout_s: float,
            failed_before: dict[str, float]) -> tuple[list[str], list[str]]:
    """(the servers that did not serve `digest` and answer its samples within `timeout_s`, those of them that
    refused it); both empty: all did. A refusal ends the wait at once: that server will not try it again.
    `failed_before`: each server's refusals before the move (`failed_loads`), read before it, so that a server
    quick to refuse is not missed."""
    version = version_of(digest)
    waiting, refused = list(servers), list[str]()
    deadline = time.monotonic() + timeout_s
    polls = 0
    while waiting and not refused and time.monotonic() < deadline:
        waiting = [url for url in waiting if not _serves(url, model, version, samples)]
        if polls % 5 == 0:  # NOTE: about once a second: reading /metrics has a server measure its drift
            refused = [url for url in waiting if refused_since(metrics_text(url), model, digest, failed_before[url])]
        polls += 1
        if waiting and not refused:
            time.sleep(0.2)
    return waiting, refused


def metrics_text(url: str) -> str:
    """A server's /metrics; empty when it cannot be read (a server restarting: asked again at the next look)."""
    try:
        answer = requests.get(f"{url}/metrics", timeout=5)
    except requests.RequestException:
        return ""
    return answer.text if answer.status_code == 200 else ""


def failed_loads(exposition: str) -> float:
    """How many models the server whose /metrics this is has refused so far (0 when it does not say)."""
    found = re.search(r'^modelci_model_loads_total\{outcome="failed"\} (\S+)$', exposition, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def refused_since(exposition: str, model: str, digest: str, failed_before: float) -> bool:
    """Whether the server whose /metrics this is refused `digest` since it had refused `failed_before` models:
    modelci serve names the last model it refused, which may be this digest refused before, by an earlier
    deploy."""
    return has_line(exposition, "modelci_model_refused_info{", f'digest="{digest}"', f'model="{model}"') and \
        failed_loads(exposition) > failed_before


def has_line(exposition: str, start: str, *parts: str) -> bool:
    """Whether a sample of the exposition starts with `start` and holds every one of `parts`."""
    return any(line.startswith(start) and all(p in line for p in parts) for line in exposition.splitlines())


def _serves(url: str, model: str, version: str, samples: Any) -> bool:
    try:
        found = requests.get(f"{url}/v2/models/{model}", timeout=5)
        if found.status_code != 200 or found.json().get("versions") != [version]:
            return False
        if not samples:
            return True
        answer = requests.post(f"{url}/v2/models/{model}/versions/{version}/infer", json=_request(samples),
                               timeout=10)
    except (requests.RequestException, ValueError):
        return False  # NOTE: a server restarting or not up yet; asked again until the timeout
    if answer.status_code != 200:
        return False
    outputs = {o["name"]: np.asarray(o["data"], dtype=np.float64) for o in answer.json().get("outputs", [])}
    return reproduces_samples(outputs.get(samples.get("output"), np.array([])), samples)


def _request(samples: dict[str, Any]) -> dict[str, Any]:
    """The infer request of the golden samples: a column per table input; an image input's uint8 pixels as
    UINT8 [rows, height, width, channels] (export keeps an image's pixels, nested lists, as its sample)."""
    rows = samples["inputs"]
    inputs = []
    for name in rows[0]:
        values = [row.get(name) for row in rows]
        if any(isinstance(v, list) for v in values):
            pixels = np.asarray(values, dtype=np.uint8)
            inputs.append({"name": name, "shape": list(pixels.shape), "datatype": "UINT8",
                           "data": pixels.ravel().tolist()})
            continue
        text = any(isinstance(v, str) for v in values)
        inputs.append({"name": name, "shape": [len(rows), 1], "datatype": "BYTES" if text else "FP64",
                       "data": values})
    return {"inputs": inputs}
