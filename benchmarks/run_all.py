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
  ``camkit demo --out docs/demo``), when it exists.

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


def demo_command(config: dict) -> str:
    """The ``camkit demo`` command line that gives ``config`` (from ``results.json``)."""
    from camkit.demo import DemoConfig

    # JSON turns tuples into lists: compare both sides through JSON.
    config = json.loads(json.dumps(config))
    options = {"seed": "--seed", "num_classes": "--classes", "epochs": "--epochs",
               "train_size": "--train-size", "test_size": "--test-size", "tap": "--tap",
               "overlays": "--overlays"}
    candidates = []
    for flag, base in (("", DemoConfig()), (" --quick", DemoConfig.quick())):
        defaults = json.loads(json.dumps(base.to_dict()))
        changed = {k: v for k, v in config.items() if defaults.get(k) != v}
        if set(changed) <= set(options) | {"ablation"}:
            extra = "".join(f" {options[k]} {v}" for k, v in changed.items() if k in options)
            if changed.get("ablation"):
                extra += " --ablation"
            candidates.append((len(changed), f"camkit demo{flag}{extra} --out docs/demo"))
    if candidates:
        return min(candidates)[1]
    return "camkit demo --out docs/demo (with the configuration listed in results.json)"


def _demo_config() -> dict | None:
    results_file = DEMO_DIR / "results.json"
    if not results_file.is_file():
        return None
    return json.loads(results_file.read_text(encoding="utf-8"))["config"]


def demo_report_section() -> str | None:
    """``docs/demo/report.md`` shifted one heading level down, links made relative to docs/."""
    config = _demo_config()
    command = demo_command(config) if config is not None else "camkit demo --out docs/demo"
    return demo_study_section("demo", "report.md", command, levels=1)


#: Further demo runs published in docs/benchmarks.md: marker name → (folder, file, command).
DEMO_STUDIES = {
    "demo-ablation": ("demo-ablation", "report.md",
                      "camkit demo --ablation --tap 0.1 --overlays 0 --out docs/demo-ablation"),
    "demo-seeds": ("demo-seeds", "summary.md",
                   "camkit demo --seeds 0 1 2 --overlays 0 --out docs/demo-seeds"),
    "demo-seeds-k12": ("demo-seeds-k12", "summary.md", "camkit demo --seeds 0 1 2 --classes 12 "
                       "--overlays 0 --out docs/demo-seeds-k12"),
}


def demo_study_section(folder: str, name: str, command: str, levels: int = 2) -> str | None:
    """A demo report or seed summary without its title, headings shifted down ``levels``
    levels, links made relative to docs/; ``None`` when the file does not exist."""
    path = REPO / "docs" / folder / name
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join(("#" * levels + line) if line.startswith("#") else line for line in lines)
    text = re.sub(r"\]\((?!https?:|/)([^)]+)\)", rf"]({folder}/\1)", text)
    return f"Command: `{command}`.\n\n" + text.strip()


def demo_readme_section() -> str | None:
    """Demo table and picture for the README, from ``docs/demo/results.json``."""
    results_file = DEMO_DIR / "results.json"
    if not results_file.is_file():
        return None
    from camkit.demo._report import format_table

    results = json.loads(results_file.read_text(encoding="utf-8"))
    config = results["config"]
    lines = [
        f"`{demo_command(config)}` trains a classifier (a small CAM head on a frozen, "
        "ImageNet-pretrained EfficientNet-Lite0 trunk) with image labels only on a procedural "
        f"dataset ({config['num_classes']} classes, {config['train_size']} training and "
        f"{config['test_size']} test images of {config['image_size']}×{config['image_size']} "
        f"pixels, seed {config['seed']}) and scores each method on the test split "
        f"(percent; classification top-1 {results['top1']:.1f}%):",
        "",
        format_table(results["methods"], markdown=True),
        "",
        f"Measured on {results['machine']}; {results['seconds']['total']:.0f} s in all. "
        "Full report: [docs/benchmarks.md](docs/benchmarks.md#the-demo).",
    ]
    overlays = DEMO_DIR / "overlays.png"
    if overlays.is_file():
        lines += ["", "![Demo: ground-truth box, then CAM, RCAM and CREAM heat maps with their "
                      "boxes (white) and the ground truth (green)](docs/demo/overlays.png)"]
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
    for marker, (folder, name, command) in DEMO_STUDIES.items():
        section = demo_study_section(folder, name, command)
        if section is None:
            print(f"run_all: docs/{folder}/{name} not found; {marker} section left as it is")
        else:
            text = replace_section(text, marker, section)
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
