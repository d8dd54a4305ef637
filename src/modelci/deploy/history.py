"""A deploy's history, kept in the registry beside the models: every deploy, refusal and rollback of a tag writes a
record (registry/records.py) tagged `TAG-history-TIME-XXXX`, which `modelci delivery` reads back. OCI registries
keep no history of tag moves themselves; these records are it.

Events: `deployed` (the tag moved and every server confirmed the model), `refused` (the change did not hold: a
server refused it or did not serve it in time, the deploy was stopped, a canary or a rolling deploy was rolled
back: the tag went back by itself) and `rolled-back` (`modelci rollback` undid a deploy that had held). Each
names the model, the time, and for a change the commit it was built from and that commit's time (the model
artifact's revision and created annotations), which is where its lead time starts.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from modelci import github
from modelci.registry import artifact
from modelci.registry.records import push_record
from modelci.registry.reference import Reference

KIND = "deploy"
HISTORY = "{tag}-history-"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(target: Reference, event: str, model: str, *, started: str | None = None, previous: str | None = None,
           how: str = "deploy", reason: str = "") -> None:
    """Write one event of `target`'s tag; a registry that refuses the record costs a warning, never the deploy."""
    at = now()
    fields = {"event": event, "tag": str(target.tag), "model": model, "at": at, "how": how}
    fields |= {"started": started} if started else {}
    fields |= {"previous": previous} if previous else {}
    fields |= {"reason": reason[:500]} if reason else {}
    try:
        annotations = artifact.annotations_of(target.with_digest(model))
        fields |= {key: annotations[name] for key, name in (("commit", artifact.REVISION),
                                                            ("committed", artifact.CREATED)) if name in annotations}
        stamp = at.replace("-", "").replace(":", "").replace(".", "")
        tag = f"{HISTORY.format(tag=target.tag)}{stamp}-{secrets.token_hex(2)}"
        push_record(target.with_tag(tag), [tag], KIND, fields)
    except Exception as exc:  # NOTE: the history is for the figures; the deploy's outcome stands without it
        github.warning(f"{target}: the {event} of {model} is not in the delivery history: {exc}")
