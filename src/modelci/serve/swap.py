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


class Watcher:
    """Polls the tag; on a new digest, prepares the model off the event loop and hands it to `swap`."""

    def __init__(self, reference: Reference, name: str, current: str, interval_s: float,
                 swap: Callable[[Loaded], None], refused: Callable[[str], None],
                 verify: Verifier | None = None) -> None:
        self.reference, self.name, self.interval_s, self.verify = reference, name, interval_s, verify
        self.swap, self.refused = swap, refused
        self.seen = current  # NOTE: the digest served, or the last one refused: neither is tried again
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
        from modelci.registry.artifact import resolve

        loop = asyncio.get_running_loop()
        try:
            descriptor = await loop.run_in_executor(None, resolve, self.reference)
        except Exception as exc:  # NOTE: a registry that is down for a moment is no reason to stop serving
            github.warning(f"watching {self.reference}: {exc}")
            return
        if descriptor is None or descriptor.digest == self.seen:
            return
        previous, self.seen = self.seen, descriptor.digest
        github.log(f"{self.reference} moved to {descriptor.digest}: loading it beside the model being served")
        try:
            loaded = await loop.run_in_executor(None, pull_and_load, self.reference, descriptor.digest, self.name,
                                                self.verify)
        except RegistryError as exc:
            # NOTE: the registry could not give what the digest names (down, or a blob not there yet): no verdict
            # on the model, so it is tried again at the next look rather than refused until the tag moves on
            self.seen = previous
            github.warning(f"{self.reference} = {descriptor.digest} could not be read, tried again at the next look "
                           f"(the model served stays): {exc}")
            return
        except Exception as exc:
            github.error(f"{self.reference} = {descriptor.digest} is not swapped in, the model served stays: {exc}")
            self.refused(descriptor.digest)
            return
        self.swap(loaded)
        github.log(f"now serving {self.name} {loaded.version} ({loaded.digest})")
