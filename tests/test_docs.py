"""The documentation cannot drift from the code.

* ``docs/api.md`` is exactly what ``docs/generate_api.py`` produces from the public names,
  signatures and docstrings;
* every error message listed in ``docs/troubleshooting.md`` is still raised by the code, and
  every message the code raises (or warns) is listed there;
* every ``python`` block of ``docs/quickstart.md`` runs, and so does its ``camkit eval`` block.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, import_torchvision

DOCS = REPO_ROOT / "docs"
SOURCE = REPO_ROOT / "camkit"
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")

#: Messages raised by the code that users never see as camkit errors: Python's own attribute
#: error of the lazy module loader and checks of internal demo helpers.
UNDOCUMENTED = {
    "module 'camkit' has no attribute {}",
    "extra_banks need feature_module and classifier_weight",
    "every handle needs a row; no row uses {}",
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("_camkit_generate_api",
                                                  DOCS / "generate_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_up_to_date():
    expected = _load_generator().generate()
    current = (DOCS / "api.md").read_text(encoding="utf-8")
    if current != expected:
        diff = [f"- {a!r}\n+ {b!r}" for a, b in zip(current.splitlines(),
                                                    expected.splitlines(), strict=False)
                if a != b][:5]
        pytest.fail("docs/api.md is out of date; run `python docs/generate_api.py`. First "
                    "differences:\n" + "\n".join(diff))


def test_api_reference_covers_every_public_name():
    import camkit

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for name in camkit.__all__:
        if name != "__version__":
            assert f"### `camkit.{name}`" in text, name
    for module_name in ("camkit.boxes", "camkit.metrics", "camkit.data.wsol_metadata"):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            heading = re.compile(rf"^### `camkit(\.\w+)*\.{name}`$", re.MULTILINE)
            assert heading.search(text), f"{module_name}.{name}"


# ---------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------
def _template(node: ast.AST, assigned: dict[str, ast.AST]) -> str | None:
    """A message expression as text with ``{}`` for every formatted part."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}"
                       for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left, assigned), _template(node.right, assigned)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name) and node.id in assigned:
        return _template(assigned[node.id], assigned)
    return None


def _messages_in_source() -> dict[str, list[str]]:
    """Template → locations of every ``raise X("...")`` and ``warnings.warn("...")``."""
    found: dict[str, list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
                continue
            assigned = {target.id: node.value for node in ast.walk(function)
                        if isinstance(node, ast.Assign)
                        for target in node.targets if isinstance(target, ast.Name)}
            for node in ast.walk(function):
                call = None
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    call = node.exc
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr == "warn"):
                    call = node
                if call is None or not call.args:
                    continue
                text = _template(call.args[0], assigned)
                if text is not None:
                    where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
                    found.setdefault(text, []).append(where)
    return found


def _messages_in_doc() -> list[str]:
    rows = re.findall(r"^\| `(.+?)` \|", (DOCS / "troubleshooting.md").read_text("utf-8"),
                      flags=re.MULTILINE)
    return [_PLACEHOLDER.sub("{}", row) for row in rows]


def test_message_extraction_sees_the_code():
    source = _messages_in_source()
    assert "{} must be a torch.Tensor, got {}" in source
    assert any(text.startswith("the classifier {} applied to the globally pooled output")
               for text in source)  # a message built in a variable first
    assert len(source) > 100


def test_documented_messages_still_exist():
    source = _messages_in_source()
    gone = [message for message in _messages_in_doc() if message not in source]
    assert not gone, ("docs/troubleshooting.md lists messages the code no longer raises "
                      "(update the page):\n" + "\n".join(gone))


def test_raised_messages_are_documented():
    documented = set(_messages_in_doc())
    missing = [f"{message!r} ({', '.join(where)})"
               for message, where in _messages_in_source().items()
               if message not in documented and message not in UNDOCUMENTED]
    assert not missing, ("messages raised by camkit but missing from docs/troubleshooting.md "
                         "(add a row with cause and fix):\n" + "\n".join(missing))


# ---------------------------------------------------------------------------------------------
# Quickstart
# ---------------------------------------------------------------------------------------------
_BLOCK = re.compile(r"(<!-- skip -->\s*\n)?```(python|bash)\n(.*?)```", re.DOTALL)


def _quickstart_blocks() -> list[tuple[str, str]]:
    text = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    return [(language, body) for skip, language, body in _BLOCK.findall(text) if not skip]


def test_quickstart_blocks_run(tmp_path, monkeypatch):
    """The python blocks run in order in one namespace, as a reader would paste them; then the
    ``camkit ...`` lines of the bash blocks run on the files those blocks wrote.

    The ecosystem blocks import torchvision, timm, transformers, torchmetrics and Lightning
    (the ``test`` extra); torchvision's compiled ops do not load on a CPU-only torch, hence the
    workaround first."""
    import_torchvision()
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__quickstart__"}
    python_blocks, commands = 0, []
    for language, body in _quickstart_blocks():
        if language == "bash":
            commands += [line for line in body.splitlines() if line.startswith("camkit ")]
            continue
        try:
            exec(compile(body, f"quickstart.md python block {python_blocks}", "exec"), namespace)
        except Exception as error:  # pragma: no cover - the message is the test's output
            pytest.fail(f"quickstart python block {python_blocks} failed: {error!r}\n{body}")
        python_blocks += 1
    assert python_blocks >= 4 and commands, "the quickstart lost its examples"
    for command in commands:
        argv = [sys.executable, "-m", "camkit.cli", *shlex.split(command)[1:]]
        result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path,
                                env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
                                check=False)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "MaxBoxAccV2 = " in result.stdout


# ---------------------------------------------------------------------------------------------
# Generated sections
# ---------------------------------------------------------------------------------------------
def _load_run_all():
    spec = importlib.util.spec_from_file_location("_camkit_run_all",
                                                  REPO_ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("path", "names"), [
    ("docs/benchmarks.md", ("bench-metrics", "bench-em", "demo", "demo-methods")),
    ("README.md", ("demo-readme",)),
])
def test_generated_sections_have_their_markers(path, names):
    run_all = _load_run_all()
    text = (REPO_ROOT / path).read_text(encoding="utf-8")
    for name in names:
        replaced = run_all.replace_section(text, name, "NEW BODY")
        assert f"<!-- {name}:start -->\nNEW BODY\n<!-- {name}:end -->" in replaced


def test_replace_section_refuses_missing_markers():
    with pytest.raises(SystemExit, match="expected exactly one"):
        _load_run_all().replace_section("no markers here", "demo", "body")


def test_demo_command_reproduces_the_configuration():
    from camkit.demo import HELD_OUT_SEEDS, DemoConfig

    command = _load_run_all().demo_command
    seeds = list(HELD_OUT_SEEDS)
    assert command(DemoConfig().to_dict(), seeds) == "camkit demo --out docs/demo"
    assert command(DemoConfig.quick().to_dict()) == "camkit demo --quick --out docs/demo"
    config = DemoConfig(tap=0.2, ablation=False, wsol_methods=("has", "adl")).to_dict()
    assert command(config, [5]) == ("camkit demo --tap 0.2 --methods has adl --no-ablation "
                                    "--seeds 5 --out docs/demo")
    assert command(DemoConfig(eval_split="val").to_dict()) == \
        "camkit demo --split val --seeds --out docs/demo"
