"""Hot swap (`modelci serve --watch`): the server follows a registry tag.

When the tag names a new digest, the artifact is pulled (every blob verified), loaded beside the
model being served, warmed up and smoke-tested on the golden samples it carries, and only then
swapped in: requests already taken finish on the model they started with. A model that fails to
load or to pass its samples is never swapped in; the old one keeps serving, and the failure is
logged and counted. Its digest is not tried again until the tag moves on.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelci import github
from modelci.errors import RegistryError
from modelci.export.parity import SAMPLES_FILE, reproduces_samples
from modelci.serve.app import Loaded, load
from modelci.serve.protocol import DTYPES

if TYPE_CHECKING:
    from modelci.registry.reference import Reference
    from modelci.registry.signature import Verifier


CANARY = "canary"  # TAG-canary names a record of this kind (registry/records.py): a model and its share
SHADOW = "shadow"  # TAG-shadow names the model that scores a copy of the requests
ROLLOUT = "rollout"  # TAG-rollout names a record of this kind: a model and the servers a rolling deploy moved to it


class SmokeTestFailed(Exception):
    pass


def pull_and_load(reference: Reference, digest: str, name: str, verify: Verifier | None) -> Loaded:
    """The artifact `digest`, loaded and checked on its golden samples; raises when it is not fit to serve.

    With `verify`, first its signature and signed verdict (`signature.verify_passed`): nothing unsigned is
    pulled."""
    from modelci.registry.artifact import WEIGHT_FILE, pull
    from modelci.registry.signature import verify_passed

    if verify is not None:
        verify_passed(reference.with_digest(digest), verify)
    with tempfile.TemporaryDirectory(prefix="modelci-swap-") as folder:
        pulled = pull(reference.with_digest(digest), Path(folder) / "model")
        loaded = load(Path(folder) / "model" / WEIGHT_FILE, name, pulled.digest)
        samples = Path(folder) / "model" / SAMPLES_FILE
        smoke_test(loaded, json.loads(samples.read_text()) if samples.is_file() else None)
    return loaded


def smoke_test(model: Loaded, samples: dict[str, object] | None) -> None:
    """Run the golden samples (which also warms the model up) and compare with the outputs stored beside them."""
    if not samples or not isinstance(samples.get("inputs"), list) or not samples["inputs"]:
        raise SmokeTestFailed("the artifact holds no golden samples (samples.json) to check the model with")
    rows = samples["inputs"]
    assert isinstance(rows, list)
    columns = {}
    # NOTE: an image input's samples are its uint8 pixels (export's `golden_samples`): the nested lists become
    # [rows, height, width, channels] here, the column an image input takes (`Loaded.run`)
    for spec in model.inputs:
        values = [row.get(spec.name) for row in rows]
        columns[spec.name] = np.array(values, dtype=object) if spec.datatype == "BYTES" else \
            np.array([np.nan if v is None else v for v in values], dtype=DTYPES[spec.datatype])
    found = model.run(columns)[str(samples.get("output") or model.outputs[0].name)]
    if not reproduces_samples(found, samples):
        expected = np.asarray(samples.get("outputs"), dtype=np.float64)
        worst = float(np.max(np.abs(found - expected))) if found.shape == expected.shape else float("inf")
        raise SmokeTestFailed(f"the model does not reproduce its golden samples (largest difference {worst:.3g})")


@dataclass(frozen=True)
class Wanted:
    """What a watched tag asks the server to serve: a model's digest (None: none), and for a canary the
    percent of requests it answers."""

    digest: str | None
    percent: float = 100.0


def model_tag(reference: Reference) -> Wanted | None:
    """A tag that names a model (`prod`, `prod-shadow`): its digest; None while the tag does not exist."""
    from modelci.registry.artifact import resolve

    descriptor = resolve(reference)
    return None if descriptor is None else Wanted(descriptor.digest)


def shadow_tag(main_digest: Callable[[], str]) -> Callable[[Reference], Wanted | None]:
    """A shadow tag names a model; the model the main tag names as shadow is none (how a shadow is ended), not
    loaded a second time."""
    def read(reference: Reference) -> Wanted | None:
        wanted = model_tag(reference)
        return Wanted(None) if wanted is not None and wanted.digest == main_digest() else wanted

    return read


def canary_tag(reference: Reference) -> Wanted | None:
    """A canary tag names a record (`modelci deploy --canary`): the model's digest and its percent; a percent of
    0 ends the canary."""
    from modelci.registry.records import read_record

    fields = read_record(reference, CANARY)
    if fields is None:
        return None
    try:
        percent = float(fields["percent"])
        digest = fields["model"]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{reference}: a canary record without a model digest and a percent ({exc})") from None
    return Wanted(digest if 0 < percent <= 100 else None, percent)


def rollout_tag(instance: str) -> Callable[[Reference], Wanted | None]:
    """A rolling deploy's tag names a record: the model, and the servers (by --instance) moved to it so far; for
    this server, that model when it is among them, else none (the main tag's)."""
    from modelci.registry.records import read_record

    def read(reference: Reference) -> Wanted | None:
        fields = read_record(reference, ROLLOUT)
        if fields is None:
            return None
        moved = [name for name in fields.get("instances", "").split(",") if name]
        return Wanted(fields.get("model") if instance in moved else None)

    return read


class Watcher:
    """Polls a tag; when it asks for another model, prepares it off the event loop and hands it to `swap`
    (None when it asks for none, e.g. a canary that ended)."""

    def __init__(self, reference: Reference, name: str, current: str, interval_s: float,
                 swap: Callable[[Loaded | None, Wanted], None], refused: Callable[[str], None],
                 verify: Verifier | None = None, read: Callable[[Reference], Wanted | None] = model_tag) -> None:
        self.reference, self.name, self.interval_s, self.verify = reference, name, interval_s, verify
        self.swap, self.refused, self.read = swap, refused, read
        # NOTE: what is served, or the last one refused: neither is tried again until the tag moves on
        self.seen: Wanted | None = Wanted(current) if current else None
        self._loaded: Loaded | None = None  # NOTE: the model this watcher swapped in last
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()

    async def check(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            wanted = await loop.run_in_executor(None, self.read, self.reference)
        except Exception as exc:  # NOTE: a registry that is down for a moment is no reason to stop serving
            github.warning(f"watching {self.reference}: {exc}")
            return
        if wanted is None or wanted == self.seen:
            return
        previous, self.seen = self.seen, wanted
        if wanted.digest is None:
            self.swap(None, wanted)
            return
        if self._loaded is not None and self._loaded.digest == wanted.digest:
            self.swap(self._loaded, wanted)  # NOTE: the same model, another share of the requests
            return
        if previous is not None and previous.digest == wanted.digest:
            return  # NOTE: refused before: not tried again until the tag names another model
        github.log(f"{self.reference} moved to {wanted.digest}: loading it beside the model being served")
        try:
            loaded = await loop.run_in_executor(None, pull_and_load, self.reference, wanted.digest, self.name,
                                                self.verify)
        except RegistryError as exc:
            # NOTE: the registry could not give what the digest names (down, or a blob not there yet): no verdict
            # on the model, so it is tried again at the next look rather than refused until the tag moves on
            self.seen = previous
            github.warning(f"{self.reference} = {wanted.digest} could not be read, tried again at the next look "
                           f"(the model served stays): {exc}")
            return
        except Exception as exc:
            github.error(f"{self.reference} = {wanted.digest} is not swapped in, the model served stays: {exc}")
            self.refused(wanted.digest)
            return
        self._loaded = loaded
        self.swap(loaded, wanted)
        github.log(f"now serving {self.name} {loaded.version} ({loaded.digest}) from {self.reference}")
