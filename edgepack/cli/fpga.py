"""``edgepack fpga``: accelerator profiles, quantization, evaluation and the partition estimate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgepack import api
from edgepack.cli.support import Finite, PathArg, home_from_env


@click.group("fpga")
def fpga() -> None:
    """Quantize a model for an FPGA accelerator, prove its accuracy and estimate its partition.

    Nothing here runs on FPGA hardware: accuracy and latency are measured on this machine's CPU, and the
    partition is an estimate from the profile's published limits.
    """


@fpga.command("profiles")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def profiles_cmd(as_json: bool) -> None:
    """The accelerator profiles edgepack knows, with the documents they were taken from."""
    found = api.fpga_profiles()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for p in found:
        q = p["quantization"]
        click.echo(f"{p['name']}: {p['title']}")
        click.echo(f"  provider {p['provider']}, opset <= {p['max_opset']}, {q['activation_type']}/"
                   f"{q['weight_type']} {'symmetric' if q['symmetric'] else 'asymmetric'}"
                   f"{', power-of-two scales' if q['power_of_two'] else ''}, base {p['base_image'] or '(none)'}")
        for source in p["sources"]:
            click.echo(f"  source: {source['title']} <{source['url']}>")


@fpga.command("quantize")
@click.option("--model", "model_ref", required=True, metavar="NAME:VERSION", help="The registered float model.")
@click.option("--calibration", required=True, type=PathArg(),
              help="Real samples: a .npy or .npz file, a directory of them, or a .jsonl file of request bodies "
                   "(read through the entry script of --inference-config). Never random data.")
@click.option("--inference-config", "config_path", type=PathArg(),
              help="The inference config whose entry script turns .jsonl request bodies into model inputs.")
@click.option("--profile", metavar="NAME", help="The accelerator profile (edgepack fpga profiles).")
@click.option("--samples", type=click.IntRange(1), help="Calibrate on the first N samples only.")
@click.option("--as", "as_name", metavar="NAME", help="Register under this name (default: the model's next version).")
@click.option("--cpu", "for_cpu", is_flag=True,
              help="Make a CPU fallback instead: u8s8 QDQ, which onnxruntime's CPU kernels run fastest.")
@click.option("--json", "as_json", is_flag=True, help="Print the registered model as JSON.")
def quantize_cmd(model_ref: str, calibration: Path, config_path: Path | None, profile: str | None,
                 samples: int | None, as_name: str | None, for_cpu: bool, as_json: bool) -> None:
    """Quantize to INT8 QDQ (symmetric, per-tensor, power-of-two scales, zero points 0), check the result against
    the profile and register it, linked to its source, profile and calibration data's digest."""
    model = api.fpga_quantize(home_from_env(), model_ref=model_ref, calibration=calibration, profile=profile,
                              samples=samples, as_name=as_name, for_cpu=for_cpu, config_path=config_path)
    if as_json:
        click.echo(json.dumps(model.to_dict(), indent=2))
        return
    click.echo(model.ref)
    purpose = "the CPU" if for_cpu else model.tags.get("edgepack.fpga.profile")
    click.echo(f"quantized {model.tags['edgepack.fpga.source']} for {purpose} on "
               f"{model.tags['edgepack.fpga.calibration_samples']} samples (sha256 "
               f"{model.tags['edgepack.fpga.calibration_sha256'][:12]}); {model.size:,} bytes", err=True)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


@fpga.command("evaluate")
@click.option("--model", "model_ref", required=True, metavar="NAME:VERSION", help="The float (reference) model.")
@click.option("--quantized", "quantized_ref", required=True, metavar="NAME:VERSION", help="The quantized model.")
@click.option("--data", "data_path", required=True, type=PathArg(),
              help="Held-out samples: a .npy or .npz file, a directory of them, or a .jsonl file of request bodies.")
@click.option("--labels", "labels_path", type=PathArg(),
              help="Class ids, a .npy of one integer per sample (default: a 'labels' array in a .npz --data).")
@click.option("--label-field", metavar="NAME",
              help="With .jsonl --data: the field of each body holding its class id (or a list, one per row).")
@click.option("--inference-config", "config_path", type=PathArg(),
              help="The inference config whose entry script turns .jsonl request bodies into model inputs.")
@click.option("--cpu-model", "cpu_model_ref", metavar="NAME:VERSION",
              help="Also evaluate this CPU fallback model (when it is not --model).")
@click.option("--output", metavar="NAME", help="The output holding the class scores (default: the first float one).")
@click.option("--max-drop", default=0.01, show_default=True, type=Finite(0, 1),
              help="Fail when an artifact's accuracy is more than this below the float model's.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def evaluate_cmd(model_ref: str, quantized_ref: str, data_path: Path, labels_path: Path | None,
                 label_field: str | None, config_path: Path | None, cpu_model_ref: str | None, output: str | None,
                 max_drop: float, as_json: bool) -> None:
    """Accuracy of the float and quantized models on held-out data, the difference with its 95% interval, top-1
    agreement, the largest output difference, size and CPU latency; exits 3 when the gate fails."""
    result = api.fpga_evaluate(home_from_env(), model_ref=model_ref, quantized_ref=quantized_ref,
                               data_path=data_path, labels_path=labels_path, max_drop=max_drop,
                               cpu_model_ref=cpu_model_ref, output=output, config_path=config_path,
                               label_field=label_field)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"{result['samples']} held-out samples; {result['note']}")
        for row in result["artifacts"]:
            low, high = row["accuracy_interval"]
            line = (f"{row['role']:<13} {row['model']:<16} accuracy {_percent(row['accuracy'])} "
                    f"[{_percent(low)}, {_percent(high)}]  {row['size_bytes']:,} bytes  "
                    f"CPU {row['latency_ms']['batch1']:.3f} ms (batch 1), {row['latency_ms']['batch32']:.3f} ms "
                    f"(batch 32)")
            if "delta" in row:
                lo, hi = row["delta_interval"]
                line += (f"\n{'':<30} delta {100 * row['delta']:+.2f} pp [{100 * lo:+.2f}, {100 * hi:+.2f}], "
                         f"top-1 agreement {_percent(row['agreement'])}, max |diff| "
                         f"{'n/a' if row['max_abs_diff'] is None else format(row['max_abs_diff'], '.4g')}")
            click.echo(line)
        click.echo("gate: passed" if result["passed"] else "gate: FAILED\n  " + "\n  ".join(result["failures"]))
    if not result["passed"]:
        sys.exit(3)


@fpga.command("report")
@click.option("--model", "model_ref", required=True, metavar="NAME:VERSION", help="A quantized model.")
@click.option("--profile", metavar="NAME", help="The accelerator profile (default: the one it was quantized for).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def report_cmd(model_ref: str, profile: str | None, as_json: bool) -> None:
    """Per node: whether the profile's accelerator would take it and why not, its FLOPs at batch 1; the subgraph
    count and the FLOPs share on the accelerator. An estimate, not a compile."""
    report = api.fpga_report(home_from_env(), model_ref=model_ref, profile=profile)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    s = report["summary"]
    click.echo(f"{report['model']} on {report['profile']} ({report['accelerator']}): ESTIMATE, not verified on "
               "hardware")
    for row in report["nodes"]:
        where = "accelerator" if row["on_accelerator"] else f"CPU: {row['reason']}"
        click.echo(f"  {row['name']:<28} {row['op']:<18} {row['flops']:>12,} FLOPs  {where}")
    click.echo(f"{s['on_accelerator']}/{s['nodes']} nodes, {_percent(s['accelerator_flops_share'])} of "
               f"{s['flops']:,} FLOPs on the accelerator; {s['accelerator_subgraphs']} accelerator subgraph(s), "
               f"{s['cpu_subgraphs']} CPU subgraph(s), {s['boundary_edges']} boundary edge(s)")
    for problem in report["invariant_problems"]:
        click.echo(f"  quantization problem: {problem}")
