"""`modelci serve`."""

from __future__ import annotations

import json
import re
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelci import github
from modelci.registry.cli import verify_option

# NOTE: about 2% of a busy 2-core server's time (a measure's 230 µs there, serve/images.py), and a drift
# window's 10,000 images filled in under two minutes
DRIFT_IMAGES_PER_SECOND = 100.0
# NOTE: at concurrency 16 on 2 cores (8,000 rows/s) a shadow scoring every row made the p50 20% longer, 2,000 a
# second 16%, 500 a second 7% (benchmarks/serve); 500 rows a second is 30,000 a minute for its figures
SHADOW_ROWS_PER_SECOND = 500.0
GC_THRESHOLDS = (50_000, 20, 100)  # allocations before a young collection; young ones before older ones (gc module)

if TYPE_CHECKING:
    from modelci.registry.signature import Verifier
    from modelci.serve.app import Server
    from modelci.serve.swap import Watcher


def _model_file(model: str, work: Path, verify: Verifier | None) -> tuple[Path, str]:
    """The ONNX file `model` names (a file, a folder holding model.onnx, or an artifact reference) and its digest.

    With `verify`, only an artifact whose signature and signed verdict verify (pulled by the digest verified)."""
    from modelci.errors import UsageError
    from modelci.registry.artifact import WEIGHT_FILE, pull, resolve
    from modelci.registry.reference import parse_reference
    from modelci.registry.signature import verify_passed

    path = Path(model)
    if path.is_dir():
        path = path / WEIGHT_FILE
    if path.exists():
        if verify is not None:
            raise UsageError(f"--verify checks the signature of a registry artifact, and {model} is a file",
                             hint="serve the signed artifact itself, e.g. --model HOST/REPO:prod")
        if not path.is_file():
            raise UsageError(f"{model}: not a model file",
                             hint=f"name an ONNX file, a folder with {WEIGHT_FILE}, or an artifact")
        return path, _digest_of(path)
    reference = parse_reference(model)
    if verify is not None:
        descriptor = resolve(reference)
        if descriptor is None:
            raise UsageError(f"{reference}: no such artifact", hint="check the tag or digest")
        reference = reference.with_digest(verify_passed(reference.with_digest(descriptor.digest), verify).digest)
    pulled = pull(reference, work / "model")
    return work / "model" / WEIGHT_FILE, pulled.digest


def _digest_of(path: Path) -> str:
    """What the server reports as its version: the artifact's digest when `path` is the model of a pulled
    artifact (the manifest.json `modelci pull` wrote beside it names this very file, as on KServe), or
    else the file's own."""
    from modelci.registry.artifact import FILEPATH
    from modelci.registry.destination import MANIFEST_FILE
    from modelci.registry.layout import sha256_digest

    own = sha256_digest(path.read_bytes())
    try:
        data = (path.parent / MANIFEST_FILE).read_bytes()
        layers = json.loads(data)["layers"]
        named = any(layer["digest"] == own and layer["annotations"][FILEPATH] == path.name for layer in layers)
    except (OSError, ValueError, KeyError, TypeError):
        return own
    return sha256_digest(data) if named else own


def _instance_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,253}", value):
        raise click.BadParameter(f"{value!r}: a name of letters, digits, '.', '_' and '-' (a rolling deploy's record "
                                 "lists the names, separated by commas)")
    return value


def _collect_garbage_rarely() -> None:
    """Keep Python's garbage collector out of the requests' way: what is loaded now lives as long as the server, so
    it is frozen out of every collection, and young collections wait for 50,000 new objects, not 700.

    NOTE: at concurrency 64 the collector's full passes over the loaded modules were the p99 (42 ms against a p50
    of 5.7 ms); frozen and rarer, the p99 is 7 to 10 ms and the server does 20% more requests (benchmarks/serve)."""
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _watchers(model_ref: str, name: str, digest: str, interval_s: float, app: Server,
              verify: Verifier | None) -> list[Watcher]:
    """The watchers of the main tag, and of its canary (`TAG-canary`), shadow (`TAG-shadow`) and rolling deploy's
    (`TAG-rollout`) tags: every model any of them names is verified (`verify`) and smoke-tested as the main tag's
    is."""
    from modelci.errors import UsageError
    from modelci.registry.reference import parse_reference
    from modelci.serve.swap import CANARY, ROLLOUT, SHADOW, Watcher, canary_tag, rollout_tag, shadow_tag

    if Path(model_ref).exists() or "@" in model_ref:
        raise UsageError(f"--watch follows a registry tag, and {model_ref} is not one",
                         hint="serve REGISTRY:TAG, e.g. --model oci:.modelci/registry:prod --watch")
    main = parse_reference(model_ref)
    tag = main.tag or "latest"
    return [Watcher(main, name, digest, interval_s, app.swap, app.refused, verify),
            Watcher(main.with_tag(f"{tag}-{CANARY}"), name, "", interval_s, app.start_canary, app.refused, verify,
                    read=canary_tag),
            Watcher(main.with_tag(f"{tag}-{SHADOW}"), name, "", interval_s, app.start_shadow, app.refused, verify,
                    read=shadow_tag(lambda: app.main.digest)),
            Watcher(main.with_tag(f"{tag}-{ROLLOUT}"), name, "", interval_s, app.roll, app.refused, verify,
                    read=rollout_tag(app.instance))]


@click.command()
@click.option("--model", "model_ref", required=True,
              help="The model: an artifact (oci:PATH:TAG, HOST/REPO:TAG, REF@DIGEST), an ONNX file, or a folder.")
@click.option("--name", default="model", show_default=True, help="The model's name in the protocol's paths.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on (0.0.0.0: all).")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--max-batch", default=256, show_default=True, type=click.IntRange(1),
              help="The most rows one request, and one batch of requests, may hold.")
@click.option("--max-delay-ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="How long a batch waits for more requests; 0: it takes what is queued.")
@click.option("--watch", is_flag=True,
              help="Follow the tag of --model: a new digest is pulled, checked on its golden samples, swapped in; "
                   "and TAG-canary (a share of the requests answered by the model its record names), TAG-shadow "
                   "(a model that scores a copy of the requests) and TAG-rollout (a rolling deploy's record), "
                   "their models checked the same way.")
@click.option("--poll-interval", default=30.0, show_default=True, type=click.FloatRange(0.05),
              help="Seconds between looks at the watched tag.")
@click.option("--shutdown-timeout", default=30, show_default=True, type=click.IntRange(0),
              help="Seconds requests in flight get to finish once the listener closes.")
@click.option("--drain-period", default=5.0, show_default=True, type=click.FloatRange(0),
              help="Seconds after SIGTERM during which /v2/health/ready answers 503 while requests are still "
                   "served, before the listener closes; SIGINT skips it.")
@click.option("--max-connections", default=1000, show_default=True, type=click.IntRange(1),
              help="Open connections (or requests in progress) past which a request is answered 503 at once.")
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds a connection gets to send a request's headers; a slower one is closed.")
@click.option("--drift-images-per-second", default=DRIFT_IMAGES_PER_SECOND, show_default=True,
              type=click.FloatRange(0, min_open=True),
              help="Encoded images measured for input drift, at most, a second: every image until the server is "
                   "that busy, a sample of them beyond.")
@click.option("--shadow-rows-per-second", default=SHADOW_ROWS_PER_SECOND, show_default=True,
              type=click.FloatRange(0, min_open=True),
              help="Rows a shadow (TAG-shadow) scores, at most, a second: every batch until the server is that busy, "
                   "a sample of them beyond.")
@click.option("--instance", default=socket.gethostname, show_default="the host name", callback=_instance_name,
              help="This server's name in a rolling deploy (modelci deploy --rolling), unique among the servers: "
                   "letters, digits, '.', '_' and '-'.")
@verify_option
def serve(model_ref: str, name: str, host: str, port: int, max_batch: int, max_delay_ms: float, watch: bool,
          poll_interval: float, shutdown_timeout: int, drain_period: float, max_connections: int,
          header_timeout: float, drift_images_per_second: float, shadow_rows_per_second: float, instance: str,
          verify_key: str | None) -> None:
    """Serve a model over the Open Inference Protocol (KServe V2) on ONNX Runtime, with /metrics.

    With --verify, the artifact served, and with --watch each one the tag moves to, must verify (a key's
    signature, or GitHub's attestations) with a signed verdict of passed: the server does not start otherwise
    (exit 1), and a new digest that does not verify is refused like one that fails its golden samples."""
    from modelci.errors import UsageError
    from modelci.registry.signature import verifier
    from modelci.serve.app import Server, load
    from modelci.serve.listener import run

    check = verifier(verify_key) if verify_key else None
    # NOTE: ONNX Runtime holds the model in memory once loaded, so a pulled artifact's folder goes
    # before serving starts: a server stopped by a signal leaves nothing behind
    with tempfile.TemporaryDirectory(prefix="modelci-serve-") as folder:
        path, digest = _model_file(model_ref, Path(folder), check)
        try:
            loaded = load(path, name, digest)
        except Exception as exc:
            raise UsageError(f"{model_ref}: not a model ONNX Runtime can load: {exc}",
                             hint="serve the model.onnx that `modelci export` wrote, or its artifact") from None
    app = Server(loaded, max_batch, max_delay_ms / 1000, drift_images_per_second, instance, shadow_rows_per_second)
    if watch:
        app.watchers = _watchers(model_ref, name, digest, poll_interval, app, check)
    github.log(f"serving {name} {loaded.version} ({digest}) on http://{host}:{port}/v2/models/{name}")
    _collect_garbage_rarely()
    run(app, host, port, drain_s=drain_period, shutdown_timeout_s=shutdown_timeout, max_connections=max_connections,
        header_timeout_s=header_timeout)
