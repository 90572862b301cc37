"""Run every benchmark and rewrite the generated sections of ``docs/benchmarks.md`` and README.

    python benchmarks/run_all.py          # metrics + EM benchmarks, then the demo sections
    python benchmarks/run_all.py --demo   # only the demo sections (from docs/demo/)
    make bench                            # the same as the first line, in .venv

Each benchmark script runs in its own process with ``--markdown``; its full output is echoed
here, and the Markdown block it prints replaces the text between the matching markers of
``docs/benchmarks.md``:

* ``<!-- bench-metrics:start -->`` … ``<!-- bench-metrics:end -->``: ``bench_metrics.py``;
* ``<!-- bench-em:start -->`` … ``<!-- bench-em:end -->``: ``bench_em.py``;
* ``<!-- demo:start -->`` … ``<!-- demo:end -->``: ``docs/demo/report.md`` (written by
  ``camkit demo --out docs/demo``), when it exists;
* ``<!-- demo-methods:start -->`` … ``<!-- demo-methods:end -->``: ``docs/demo-methods/report.md``
  (``METHODS_COMMAND``), when it exists.

From ``docs/demo/results.json`` the README's ``<!-- demo-readme:start -->`` …
``<!-- demo-readme:end -->`` section gets the demo's table and a link to
``docs/demo/overlays.png``. Every file is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
README = REPO / "README.md"
DEMO_DIR = REPO / "docs" / "demo"
sys.path.insert(0, str(REPO))

from camkit._io import write_text_atomic  # noqa: E402

#: Arguments of each script: about two to four minutes each on two loaded cores.
METRICS_ARGS = "--images 60 --repeat 5 --workers 2 --workers-images 1000"
EM_ARGS = "--repeats 15 --threads 1"  # one thread: stable on a shared machine

_BLOCK = re.compile(r"<!-- markdown:start -->\n(.*?)\n<!-- markdown:end -->", re.DOTALL)


def replace_section(text: str, name: str, body: str) -> str:
    """Put ``body`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``text``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"run_all: expected exactly one {start} … {end} section")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text)


def run_script(script: str, arguments: str) -> str:
    """Run ``benchmarks/<script> <arguments> --markdown``, echo it, return its Markdown."""
    command = [sys.executable, str(REPO / "benchmarks" / script), *shlex.split(arguments),
               "--markdown"]
    print(f"$ {' '.join(command[1:])}", flush=True)
    lines = []
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    if process.returncode != 0:
        raise SystemExit(f"run_all: {script} failed with exit status {process.returncode}")
    found = _BLOCK.findall("".join(lines))
    if not found:
        raise SystemExit(f"run_all: {script} printed no Markdown block")
    command_line = f"python benchmarks/{script} {arguments} --markdown"
    return f"Command: `{command_line}`.\n\n{found[-1]}"


def demo_command(config: dict, seeds: list[int] | None = None) -> str:
    """The ``camkit demo`` command line that gives ``config`` (from ``results.json``) and the
    held-out ``seeds`` (``None``: the run had none)."""
    from camkit.demo import HELD_OUT_SEEDS, DemoConfig

    # JSON turns tuples into lists: compare both sides through JSON.
    config = json.loads(json.dumps(config))
    options = {"seed": "--seed", "num_classes": "--classes", "epochs": "--epochs",
               "train_size": "--train-size", "eval_size": "--eval-size", "tap": "--tap",
               "eval_split": "--split", "calibration_map": "--calibration-map",
               "added_map": "--added-map", "wsol_methods": "--methods",
               "overlays": "--overlays", "threads": "--threads"}
    flags = {"ablation": "--no-ablation", "trunk_channels_in_cam": "--trunk-channels-in-cam"}
    candidates = []
    for flag, base, default_seeds in (("", DemoConfig(), list(HELD_OUT_SEEDS)),
                                      (" --quick", DemoConfig.quick(), [])):
        defaults = json.loads(json.dumps(base.to_dict()))
        changed = {k: v for k, v in config.items() if defaults.get(k) != v}
        if not set(changed) <= set(options) | set(flags):
            continue
        extra = ""
        for key, value in changed.items():
            if key in flags:
                extra += f" {flags[key]}"
            else:
                shown = " ".join(map(str, value)) if isinstance(value, list) else value
                extra += f" {options[key]} {shown}"
        held_out = seeds or []
        if held_out != default_seeds:
            extra += " --seeds" + "".join(f" {s}" for s in held_out)
        candidates.append((len(changed), f"camkit demo{flag}{extra} --out docs/demo"))
    if candidates:
        return min(candidates)[1]
    return "camkit demo --out docs/demo (with the configuration listed in results.json)"


def _demo_results() -> dict | None:
    results_file = DEMO_DIR / "results.json"
    if not results_file.is_file():
        return None
    return json.loads(results_file.read_text(encoding="utf-8"))


def _command_of(results: dict) -> str:
    seeds = [int(s) for s in results.get("held_out", {})]
    return demo_command(results["config"], seeds)


def demo_report_section() -> str | None:
    """``docs/demo/report.md`` shifted one heading level down, links made relative to docs/."""
    results = _demo_results()
    command = _command_of(results) if results is not None else "camkit demo --out docs/demo"
    return demo_study_section("demo", "report.md", command, levels=1)


def demo_study_section(folder: str, name: str, command: str, levels: int = 2) -> str | None:
    """A demo report without its title, headings shifted down ``levels`` levels, links made
    relative to docs/; ``None`` when the file does not exist."""
    path = REPO / "docs" / folder / name
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join(("#" * levels + line) if line.startswith("#") else line for line in lines)
    text = re.sub(r"\]\((?!https?:|/)([^)]+)\)", rf"]({folder}/\1)", text)
    return f"Command: `{command}`.\n\n" + text.strip()


#: The demo's WSOL-method rows (seed 0 only), published in docs/benchmarks.md.
METHODS_COMMAND = ("camkit demo --methods has adl --seeds --no-ablation --overlays 0 "
                   "--out docs/demo-methods")

#: Reruns of the demo's first seed with PyTorch's CPU kernels forced to another instruction
#: set: ``ATEN_CPU_CAPABILITY=<isa> camkit demo --seeds --no-ablation --overlays 0
#: --out docs/demo-repeat/<isa>``.
REPEAT_DIR = REPO / "docs" / "demo-repeat"
DEMO_TIME_TARGET = 300.0  # seconds: the default run's target on two cores


def repeatability_line(results: dict) -> str | None:
    """How far the first seed's table moved under other instruction sets, from the reruns in
    ``docs/demo-repeat/``; ``None`` without any."""
    from camkit.demo._report import COLUMNS, _value

    main = results["seed"]["methods"]
    parts = []
    for folder in sorted(REPEAT_DIR.glob("*/results.json")):
        rerun = json.loads(folder.read_text(encoding="utf-8"))
        if rerun["config"]["seed"] != results["config"]["seed"]:
            continue
        moves = [abs(_value(rerun["methods"][name], key) - _value(figures, key))
                 for name, figures in main.items() for _, key in COLUMNS]
        isa = rerun["machine"]["instruction_set"]
        parts.append(f"{isa} kernels (`ATEN_CPU_CAPABILITY={folder.parent.name}`): at most "
                     f"{max(moves):.1f} points, {sum(m > 0 for m in moves)} of {len(moves)} "
                     "figures changed")
    if not parts:
        return None
    return (f"Repeatability: the same seed-{results['config']['seed']} run with PyTorch's CPU "
            f"kernels forced to other instruction sets than this machine's "
            f"{results['machine']['instruction_set']} moved the table by: "
            + "; ".join(parts) + " (reruns in docs/demo-repeat/). No second CPU model was "
            "available for this design.")


def demo_readme_section() -> str | None:
    """The demo's tables and picture for the README, from ``docs/demo/results.json`` (a
    default run: one seed in full plus held-out seeds)."""
    results = _demo_results()
    if results is None or "summary" not in results:
        return None
    from camkit.demo._machine import describe_machine
    from camkit.demo._report import format_claims, format_spread, format_table

    config, main = results["config"], results["seed"]
    top1 = ", ".join(f"{m} {v:.1f}%" for m, v in main["top1"].items())
    lines = [
        f"`{_command_of(results)}` trains classifiers (small CAM heads on a frozen, "
        "ImageNet-pretrained EfficientNet-Lite0 trunk) with image labels only on a procedural "
        f"dataset ({config['num_classes']} classes, {config['train_size']} training images "
        f"of {config['image_size']}×{config['image_size']} pixels) and scores each method on "
        f"{config['eval_size']} images of the {config['eval_split']} split. Seed "
        f"{config['seed']} (percent; classification top-1 {top1}):",
        "",
        format_table(main["methods"], markdown=True),
        "",
        "Held-out seeds, never used for a design decision: "
        + format_spread(results["summary"], markdown=True),
        "",
        "The papers' claims on the held-out seeds (rules in `camkit/demo/_claims.py`):",
        "",
        format_claims(results["claims"], markdown=True),
        "",
        f"Measured on {describe_machine(results['machine'])}; {results['seconds']:.0f} s in "
        "all. Full report: [docs/benchmarks.md](docs/benchmarks.md#the-demo); design "
        "decisions: [docs/demo-dataset-design.md](docs/demo-dataset-design.md).",
    ]
    if results["seconds"] > DEMO_TIME_TARGET:
        lines[-1] += (f" That is over the default run's {DEMO_TIME_TARGET / 60:.0f}-minute "
                      "target on two cores.")
    repeat = repeatability_line(results)
    if repeat is not None:
        lines += ["", repeat]
    if (DEMO_DIR / "overlays.png").is_file():
        lines += ["", "![Demo: ground-truth box, then each method's heat map with its boxes "
                      "(white) and the ground truth (green)](docs/demo/overlays.png)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true",
                        help="only refresh the demo sections from docs/demo/")
    parser.add_argument("--metrics-args", default=METRICS_ARGS,
                        help=f"arguments of bench_metrics.py (default: {METRICS_ARGS!r})")
    parser.add_argument("--em-args", default=EM_ARGS,
                        help=f"arguments of bench_em.py (default: {EM_ARGS!r})")
    parser.add_argument("--skip", nargs="*", default=[], choices=("metrics", "em"),
                        help="benchmarks to leave as they are")
    args = parser.parse_args(argv)

    text = BENCHMARKS_MD.read_text(encoding="utf-8")
    if not args.demo:
        if "metrics" not in args.skip:
            text = replace_section(text, "bench-metrics",
                                   run_script("bench_metrics.py", args.metrics_args))
        if "em" not in args.skip:
            text = replace_section(text, "bench-em", run_script("bench_em.py", args.em_args))
    report = demo_report_section()
    if report is not None:
        text = replace_section(text, "demo", report)
    else:
        print(f"run_all: {DEMO_DIR / 'report.md'} not found; demo section left as it is")
    methods = demo_study_section("demo-methods", "report.md", METHODS_COMMAND)
    if methods is None:
        print("run_all: docs/demo-methods/report.md not found; demo-methods section left as it is")
    else:
        text = replace_section(text, "demo-methods", methods)
    write_text_atomic(BENCHMARKS_MD, text)
    print(f"wrote {BENCHMARKS_MD.relative_to(REPO)}")

    readme = demo_readme_section()
    if readme is not None:
        write_text_atomic(README, replace_section(README.read_text(encoding="utf-8"),
                                             "demo-readme", readme))
        print(f"wrote {README.relative_to(REPO)}")
    else:
        print(f"run_all: {DEMO_DIR / 'results.json'} not found; README demo section left as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
