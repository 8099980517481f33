"""CI runs what the README tells a user to run: the README's two commands (install and test,
install and run the demo) appear verbatim in .ci/run, the demo's with only CI's budget overrides
after it."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_commands(readme: str) -> list:
    """The one-line commands of the README's ``bash`` blocks, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def ci_drift(readme: str, ci_script: str) -> list:
    """How ``ci_script`` strays from the README's commands (empty when it runs each verbatim: as a
    whole line, or followed by more arguments on the same line)."""
    lines = [line.strip() for line in ci_script.splitlines() if not line.strip().startswith("#")]
    problems = []
    for command in readme_commands(readme):
        if not any(line == command or line.startswith(command + " ") for line in lines):
            problems.append(f".ci/run does not run the README's command {command!r}")
    return problems


def test_ci_runs_the_readmes_two_commands_verbatim():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = readme_commands(readme)
    assert len(commands) == 2 and all(command.startswith("pip install") for command in commands), commands
    assert "python -m pytest -q tests" in commands[1] and "tools/run_demo.py" in commands[0], commands
    assert ci_drift(readme, (REPO / ".ci" / "run").read_text(encoding="utf-8")) == []


def test_a_changed_readme_command_is_drift():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci_script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    changed = readme.replace("python -m pytest -q tests", "python -m pytest -q -x tests")
    assert ci_drift(changed, ci_script) == [
        ".ci/run does not run the README's command "
        """'pip install -r requirements.txt -e ".[test]" && python -m pytest -q -x tests'"""
    ]
    # A CI line that only starts like the command (an extra word glued on) is drift too.
    assert ci_drift(readme, ci_script.replace("-e . && python tools/run_demo.py", "-e .x && python tools/run_demo.py"))


def test_setup_claims_no_torch_older_than_the_one_ci_tests():
    # CI installs requirements.txt's pins; setup.py's lower bounds must not promise an older release
    # that no test run has passed with (the only torch 2.13 here is a CPU build, with which PyPI's
    # torchvision 0.28 and torchcodec cannot load; see docs/training.md).
    import ast

    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line)
    call = next(
        node for node in ast.walk(ast.parse((REPO / "setup.py").read_text())) if isinstance(node, ast.keyword)
        and node.arg == "install_requires"
    )  # fmt: skip
    bounds = dict(ast.literal_eval(item).split(">=") for item in call.value.elts if ">=" in ast.literal_eval(item))
    for package in ("torch", "torchvision"):
        tested = tuple(int(part) for part in pins[package].split(".")[:2])
        claimed = tuple(int(part) for part in bounds[package].split(".")[:2])
        assert claimed == tested, f"setup.py says {package}>={bounds[package]}, CI tests {pins[package]}"
