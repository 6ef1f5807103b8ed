"""``edgepack profile``: the CLI face of edgepack.profiling."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgepack import api
from edgepack.cli.support import Finite, PathArg, home_from_env


def _concurrencies(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        levels = ()
    if not levels or levels[0] < 1 or levels[-1] > 1024:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of numbers from 1 to 1024")
    return levels


@click.command("profile")
@click.option("--model", "model_ref", required=True, metavar="NAME[:VERSION]", help="A registered model.")
@click.option("--inference-config", "config_path", required=True, type=PathArg(),
              help="inferenceconfig.json (Azure ML keys).")
@click.option("--sample", "sample_path", required=True, type=PathArg(),
              help="A request body: .json, .jsonl (one per line, sent in turn), .npy (a tensor) or raw bytes.")
@click.option("--concurrency", default="1,2,4,8", show_default=True, callback=_concurrencies,
              help="Concurrent requests to measure, comma-separated.")
@click.option("--seconds", default=5.0, show_default=True, type=Finite(0.1, 3600),
              help="Measured seconds per concurrency.")
@click.option("--startup-timeout", default=120.0, show_default=True, type=Finite(1, 3600),
              help="Seconds to wait for init().")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements and recommendation as JSON.")
def profile_cmd(model_ref: str, config_path: Path, sample_path: Path, concurrency: tuple[int, ...],
                seconds: float, startup_timeout: float, as_json: bool) -> None:
    """Run the model with sample data at a few concurrencies and recommend CPU and memory for a deployment.

    The entry script runs in this machine's Python (its requirements must be installed here), behind the same
    runtime the images serve with, on loopback; CPU time and resident memory are read from /proc.
    """
    say = None if as_json else (lambda line: click.echo(line, err=True))
    report = api.profile(home_from_env(), model_ref=model_ref, config_path=config_path, sample_path=sample_path,
                         concurrencies=concurrency, seconds=seconds, startup_timeout=startup_timeout, progress=say)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"{'concurrency':>11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU cores':>10} "
               f"{'peak MiB':>9}")
    for lv in report.levels:
        click.echo(f"{lv.concurrency:>11} {lv.rps:>9,.0f} {lv.p50_ms:>8.2f} {lv.p99_ms:>8.2f} {lv.errors:>7} "
                   f"{lv.cpu_cores:>10.2f} {lv.peak_rss_bytes / (1 << 20):>9,.0f}")
    rec = report.recommendation
    click.echo(f"\nrecommended: cpu {rec.cpu:g}, memory {rec.memory_gb:g} GiB "
               f"(about {rec.expected_rps:,.0f} req/s per replica at concurrency {rec.concurrency}, "
               f"p99 {rec.expected_p99_ms:.1f} ms)")
    click.echo(f"because {rec.reason}; the runtime was ready {report.startup_seconds:.2f}s after start")
    if rec.note:
        click.echo(f"note: {rec.note}")
