"""`modelci deploy` and `modelci rollback`."""

from __future__ import annotations

import math
from pathlib import Path

import click

from modelci import github
from modelci.deploy.evidence import Rule
from modelci.options import config_option
from modelci.registry.cli import verify_option

DEFAULT_TAG = "prod"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(click.ParamType):  # type: ignore[type-arg]  # NOTE: generic from click 8.2; 8.1 is supported
    """90s, 15m, 1h, 90d, 12w or a number of seconds."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        text = str(value).strip()
        number, unit = (text[:-1], text[-1]) if text[-1:] in UNITS else (text, "s")
        try:
            seconds = float(number) * UNITS[unit]
        except ValueError:
            self.fail(f"{value!r} is not a duration: give seconds, or a number and s, m or h (15m)", param, ctx)
        if not 0 < seconds < math.inf:
            self.fail(f"{value!r}: a duration is more than 0, and finite", param, ctx)
        return seconds


DURATION = Duration()


@click.command()
@click.argument("source", metavar="REF")
@click.option("--tag", default=DEFAULT_TAG, show_default=True, help="The tag the servers watch.")
@click.option("--server", "servers", multiple=True,
              help="A server watching the tag (http://HOST:PORT), to wait for; repeat for each.")
@click.option("--model-name", default="model", show_default=True, help="The model's name on the servers.")
@click.option("--timeout", "timeout_s", default=120.0, show_default=True, type=click.FloatRange(0),
              help="Seconds the servers get to serve the new digest and answer its golden samples.")
@click.option("--force", is_flag=True, help="Deploy an artifact whose gate verdict was not a pass.")
@click.option("--canary", "percent", type=click.FloatRange(0, 100, min_open=True, max_open=True),
              help="Answer this percent of the requests with REF (TAG-canary), judge it on the servers' traffic "
                   "for --for, then promote it to TAG or roll it back.")
@click.option("--shadow", is_flag=True,
              help="Have the servers score a copy of the requests with REF (TAG-shadow); with --for, report how "
                   "it agreed with the stable model after that long, then end it.")
@click.option("--rolling", is_flag=True,
              help="Move the servers to REF --batch at a time (by their --instance), each batch confirmed on its "
                   "golden samples before the next, then TAG; a batch that fails stops the roll and moves the others "
                   "back.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1),
              help="Rolling: servers moved at a time.")
@click.option("--for", "window", type=DURATION, default=None,
              help="How long the canary is judged, or the shadow runs: 90s, 15m, 1h.")
@click.option("--max-error-increase", default=Rule.error_rate, show_default=True, type=click.FloatRange(0, 1),
              help="Canary: how much higher its share of failed requests may be than the stable model's.")
@click.option("--max-slow-increase", default=Rule.slow_share, show_default=True, type=click.FloatRange(0, 1),
              help="Canary: how much higher its share of requests slower than the stable model's p99 may be.")
@click.option("--max-prediction-shift", default=Rule.prediction_shift, show_default=True,
              type=click.FloatRange(0, 1),
              help="Canary: how far its predictions' distribution may be from the stable model's (total variation "
                   "distance).")
@click.option("--min-requests", default=Rule.min_requests, show_default=True, type=click.IntRange(1),
              help="Canary: the fewest requests it must answer in the window to be promoted.")
@click.option("--look-every", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="Canary: seconds between looks at the servers' metrics (a worse canary is rolled back at the next "
                   "look).")
@click.option("--report", "report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the canary's or shadow's figures here as JSON.")
@verify_option
@config_option
def deploy(source: str, tag: str, servers: tuple[str, ...], model_name: str, timeout_s: float, force: bool,
           percent: float | None, shadow: bool, rolling: bool, batch: int, window: float | None,
           max_error_increase: float, max_slow_increase: float, max_prediction_shift: float, min_requests: int,
           look_every: float, report: Path | None, verify_key: str | None, config_path: Path | None) -> None:
    """Move TAG to the artifact REF (or :TAG of the config's registry), wait until every --server serves it
    and answers its golden samples, and move TAG back (exit 1) when they do not in time.

    With --canary, REF answers a share of the requests first and is promoted only when its traffic shows it no
    worse than the stable model's (error rate, slow requests, predictions), with intervals; it is rolled back
    (exit 1) when a figure is worse, or when it cannot be judged. With --shadow, REF only scores a copy of the
    requests. With --verify, an artifact that does not verify is refused (exit 1) before TAG moves."""
    from modelci.deploy.rollout import deploy as deploy_artifact
    from modelci.errors import UsageError
    from modelci.registry.cli import source_reference
    from modelci.registry.signature import verifier

    check = verifier(verify_key) if verify_key else None
    reference = source_reference(source, config_path)
    if percent is not None and not math.isfinite(percent):
        raise UsageError(f"--canary {percent}: a percent of the requests, between 0 and 100",
                         hint="e.g. --canary 10")
    if sum([percent is not None, shadow, rolling]) > 1:
        raise UsageError("--canary, --shadow and --rolling are three deploys",
                         hint="run the shadow first, then the canary (which ends with a deploy to every server)")
    if percent is not None and not window:
        raise UsageError("--canary needs --for: how long its traffic is judged", hint="e.g. --canary 10 --for 15m")
    if percent is not None:
        from modelci.deploy.canary import canary

        rule = Rule(max_error_increase, max_slow_increase, max_prediction_shift, min_requests)
        verdict = canary(reference, tag, list(servers), model_name, percent, float(window or 0), rule, timeout_s,
                         force=force, verify=check, poll_s=look_every, report=report)
        github.set_output("digest", verdict.canary)
        github.log(f"promoted {verdict.canary} to {tag}: {verdict.reason}")
        click.echo(verdict.canary)
        return
    if shadow:
        from modelci.deploy.canary import shadow as run_shadow

        found = run_shadow(reference, tag, list(servers), model_name, float(window or 0), timeout_s, force=force,
                           verify=check, report=report)
        github.set_output("digest", found["shadow"])
        click.echo(found["shadow"])
        return
    if rolling:
        from modelci.deploy.rollout import rolling as roll

        digest = roll(reference, tag, list(servers), model_name, timeout_s, batch, force=force, verify=check)
    else:
        digest = deploy_artifact(reference, tag, list(servers), model_name, timeout_s, force=force, verify=check)
    github.set_output("digest", digest)
    github.log(f"deployed {digest} as {tag}" + (f" on {len(servers)} server(s)" if servers else ""))
    click.echo(digest)


@click.command()
@click.argument("registry", metavar="REGISTRY")
@click.option("--tag", default=DEFAULT_TAG, show_default=True, help="The tag to move back.")
def rollback(registry: str, tag: str) -> None:
    """Move TAG of REGISTRY back to the artifact the last deploy replaced (TAG-previous)."""
    from modelci.deploy.rollout import rollback as roll_back
    from modelci.registry.reference import parse_reference

    digest = roll_back(parse_reference(registry), tag)
    github.set_output("digest", digest)
    github.log(f"{tag} is back on {digest}")
    click.echo(digest)


@click.command()
@click.argument("registry", metavar="[REGISTRY]", required=False)
@click.option("--tag", default=DEFAULT_TAG, show_default=True, help="The tag whose deploys are counted.")
@click.option("--since", "since", type=DURATION, default=None, help="Only the history of the last 90d, 12w...")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path(".modelci/out"),
              show_default=True, help="Where delivery.json goes.")
@click.option("--prometheus", "textfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures in Prometheus' text format here (node_exporter's textfile collector).")
@config_option
def delivery(registry: str | None, tag: str, since: float | None, out: Path, textfile: Path | None,
             config_path: Path | None) -> None:
    """The delivery figures of TAG in REGISTRY (the config's registry when not given), from the history its
    deploys and rollbacks wrote there: lead time from commit to TAG, deploy frequency, change failure rate and
    time to restore."""
    from datetime import datetime, timedelta, timezone

    from modelci import atomic
    from modelci.deploy import delivery as figures
    from modelci.registry.cli import source_reference

    start = datetime.now(timezone.utc) - timedelta(seconds=since) if since else None
    found = figures.delivery(source_reference(registry or f":{tag}", config_path), tag, start)
    shown = figures.markdown(found)
    for line in shown.splitlines():
        if line and not line.startswith(("```", "  ", "xychart")):
            github.log(line)
    for note in found.notes:
        github.warning(note)
    github.add_summary(shown)
    path = figures.write(found, out)
    if textfile is not None:
        atomic.write_text(textfile, figures.prometheus(found))
    github.set_output("delivery", str(path))
    click.echo(path)
