"""`modelci deploy` and `modelci rollback`."""

from __future__ import annotations

from pathlib import Path

import click

from modelci import github
from modelci.options import config_option
from modelci.registry.cli import verify_option

DEFAULT_TAG = "prod"


@click.command()
@click.argument("source", metavar="REF")
@click.option("--tag", default=DEFAULT_TAG, show_default=True, help="The tag the servers watch.")
@click.option("--server", "servers", multiple=True,
              help="A server watching the tag (http://HOST:PORT), to wait for; repeat for each.")
@click.option("--model-name", default="model", show_default=True, help="The model's name on the servers.")
@click.option("--timeout", "timeout_s", default=120.0, show_default=True, type=click.FloatRange(0),
              help="Seconds the servers get to serve the new digest and answer its golden samples.")
@click.option("--force", is_flag=True, help="Deploy an artifact whose gate verdict was not a pass.")
@verify_option
@config_option
def deploy(source: str, tag: str, servers: tuple[str, ...], model_name: str, timeout_s: float, force: bool,
           verify_key: str | None, config_path: Path | None) -> None:
    """Move TAG to the artifact REF (or :TAG of the config's registry), wait until every --server serves it
    and answers its golden samples, and move TAG back (exit 1) when they do not in time.

    With --verify, an artifact that does not verify is refused (exit 1) before TAG moves."""
    from modelci.deploy.rollout import deploy as deploy_artifact
    from modelci.registry.cli import source_reference
    from modelci.registry.signature import verifier

    check = verifier(verify_key) if verify_key else None
    reference = source_reference(source, config_path)
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
