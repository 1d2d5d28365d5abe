"""The docs keep up with the code: README.md is the front door, docs/ the manual.

- Every property (`verify.properties.PROPERTIES`), every command-line option (the pytest options
  of every plugin module under verify/, and the argparse options of every `python -m verify...`
  tool) and every built-in variant (`fused.registry.BUILTIN_VARIANTS`) is named in docs/.
- Every relative link in README.md and docs/*.md resolves, anchors included.
- Every shell command shown in README.md (```bash, ```sh and ```console blocks) runs:
  * the two set-up commands of the first block are what `.ci/run` runs on a fresh clone, so this
    test only checks that they are unchanged and that `.ci/run` still ends with them;
  * a command that ends in `# needs a CUDA GPU` is skipped;
  * a `$ command` of a console block runs for real, and every output line shown under it must be
    in what it prints (`...` elides text); each `replay:` line shown runs too and must fail, as
    the report says;
  * other pytest commands take minutes, so they run with `--collect-only -q` appended: that
    proves their paths, options and variant specs are valid;
  * `python -m verify.compare` runs for real on two recorded runs of tests/data/gate, placed where
    the command's paths look.
  A command none of these rules covers fails the test: add a rule rather than leave it unchecked.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

# The README's first block: what a fresh machine runs. `.ci/run` runs these (after lint and types).
SETUP = (
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e '.[plot,triton,redis]' "
    "&& .venv/bin/pytest verify",
    ".venv/bin/pytest tests",
)
NEEDS_GPU = "# needs a CUDA GPU"
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
OPTION = r"(?<![\w-]){}(?![\w-])"


def docs_text() -> str:
    return "\n".join(page.read_text() for page in sorted(DOCS.glob("*.md")))


def without_code_blocks(text: str) -> str:
    return re.sub(r"(?ms)^```.*?^```", "", text)


# --- names the manual must mention ---------------------------------------------------------------


class _OptionRecorder:
    """Stands in for pytest's parser and its groups: records the option strings."""

    def __init__(self):
        self.options: list[str] = []

    def getgroup(self, *args, **kwargs):
        return self

    def addoption(self, *names, **kwargs):
        self.options.extend(name for name in names if name.startswith("--"))

    def addini(self, *args, **kwargs):
        pass


def _modules_defining(marker: re.Pattern) -> list[str]:
    modules = []
    for path in sorted((ROOT / "verify").rglob("*.py")):
        if marker.search(path.read_text()):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] in ("__init__", "__main__"):
                parts = parts[:-1]
            modules.append(".".join(parts))
    return sorted(set(modules))


def pytest_options() -> list[str]:
    recorder = _OptionRecorder()
    for name in _modules_defining(re.compile(r"(?m)^def pytest_addoption\(")):
        importlib.import_module(name).pytest_addoption(recorder)
    return recorder.options


class _Parsed(Exception):
    def __init__(self, parser):
        self.parser = parser


def cli_modules() -> list[str]:
    """The `python -m` tools: modules with a top-level `if __name__ == "__main__":`, and
    packages with a __main__.py."""
    guarded = _modules_defining(re.compile(r"(?m)^if __name__ == .__main__.:"))
    packages = [
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "verify").rglob("__main__.py")
    ]
    return sorted(set(guarded + packages) - {"verify"})


def cli_options(module: str) -> list[str]:
    """Run the tool as `python -m` would, in-process, and stop at its argument parsing."""

    def capture(parser, args=None, namespace=None):
        raise _Parsed(parser)

    path = ROOT / Path(*module.split("."))
    path = path / "__main__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__main__.py" else module.rpartition(".")[0]
    # As `python -m` runs it (runpy cannot load what pytest's assertion rewriting imported).
    namespace = {"__name__": "__main__", "__file__": str(path), "__package__": package}
    saved_argv = sys.argv
    sys.argv = [module]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
            exec(compile(path.read_text(), str(path), "exec"), namespace)
    except _Parsed as parsed:
        return [s for a in parsed.parser._actions for s in a.option_strings if s.startswith("--")]
    finally:
        sys.argv = saved_argv
    raise AssertionError(f"python -m {module} parsed no arguments")


def test_every_property_is_documented():
    from verify.properties import PROPERTIES

    text = docs_text()
    missing = [name for name in PROPERTIES if f"`{name}`" not in text]
    assert len(PROPERTIES) >= 10
    assert not missing, f"properties named nowhere in docs/: {missing}"


def test_every_builtin_variant_is_documented():
    from fused.registry import BUILTIN_VARIANTS

    text = docs_text()
    names = [variant.name for variant in BUILTIN_VARIANTS]
    missing = [name for name in names if f"`{name}`" not in text]
    assert names
    assert not missing, f"built-in variants named nowhere in docs/: {missing}"


def test_every_pytest_option_is_documented():
    options = pytest_options()
    text = docs_text()
    missing = [o for o in options if not re.search(OPTION.format(re.escape(o)), text)]
    assert "--variant" in options and "--verify-db" in options
    assert not missing, f"pytest options named nowhere in docs/: {missing}"


def test_every_cli_option_is_documented():
    modules = cli_modules()
    assert "verify.compare" in modules and "verify.replay" in modules, modules
    text = docs_text()
    missing = []
    for module in modules:
        assert re.search(OPTION.format(re.escape(module)), text), f"{module} named nowhere in docs/"
        for option in cli_options(module):
            if option != "--help" and not re.search(OPTION.format(re.escape(option)), text):
                missing.append(f"python -m {module} {option}")
    assert not missing, f"command-line options named nowhere in docs/: {missing}"


# --- links ---------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"(?m)^#{1,6} (.+)$", without_code_blocks(page.read_text()))
    return {slug(h) for h in headings}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", without_code_blocks(page.read_text()))
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


def test_relative_links_resolve():
    broken = []
    checked = 0
    for page in PAGES:
        for target in relative_links(page):
            checked += 1
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert checked > 20
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_slug_matches_github():
    assert slug("Under torch.compile: the alternatives measured") == (
        "under-torchcompile-the-alternatives-measured"
    )
    assert slug("The suite's own speed") == "the-suites-own-speed"
    assert slug("3. `fused`: kernels under test") == "3-fused-kernels-under-test"


# --- the README's commands -----------------------------------------------------------------------


def shell_blocks(text: str) -> list[tuple[str, list[str]]]:
    return [
        (lang, body.splitlines())
        for lang, body in re.findall(r"(?ms)^```(bash|sh|console)\n(.*?)^```", text)
    ]


def commands_of(lang: str, lines: list[str]) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown under it): one per command, continuations joined."""
    commands: list[tuple[str, list[str]]] = []
    pending = ""
    for line in lines:
        if lang == "console" and not line.startswith("$ "):
            if commands:
                commands[-1][1].append(line)
            continue
        line = line[2:] if lang == "console" else line
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append((pending + line, []))
        pending = ""
    return commands


def readme_commands():
    blocks = shell_blocks(README.read_text())
    first_lang, first = blocks[0]
    found = []
    for lang, lines in blocks[1:]:
        found.extend(commands_of(lang, lines))
    return first, found


def to_argv(command: str) -> tuple[dict[str, str], list[str]]:
    """Environment assignments and argv, with the README's .venv made this interpreter."""
    words = shlex.split(command, comments=True)
    env = {}
    while words and ENV_ASSIGNMENT.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    program = {
        ".venv/bin/pytest": [sys.executable, "-m", "pytest"],
        ".venv/bin/python": [sys.executable],
    }
    assert words[0] in program, f"{command!r}: the README runs .venv/bin/pytest or .venv/bin/python"
    return env, program[words[0]] + words[1:]


def run(
    argv: list[str], extra_env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", **extra_env}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def shown_in(expected: str, printed: list[str]) -> bool:
    """A line shown in the README, `...` eliding text, is a line of the real output (where the
    README's .venv/bin/python is this interpreter)."""
    expected = expected.replace(" .venv/bin/python ", f" {sys.executable} ")
    pieces = [p for p in expected.strip().split("...") if p.strip()]
    for line in printed:
        at = 0
        for piece in pieces:
            at = line.find(piece.strip(), at)
            if at < 0:
                break
            at += len(piece.strip())
        else:
            return True
    return False


def test_setup_commands_are_what_ci_runs():
    first, _ = readme_commands()
    assert README.read_text().startswith("# convbn-verify\n\n```bash\n"), "the commands come first"
    assert tuple(first) == SETUP, "README's set-up commands changed: update .ci/run and SETUP"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-2:] == [".venv/bin/pytest verify", ".venv/bin/pytest tests"]


def check_console(command: str, shown: list[str]) -> None:
    env, argv = to_argv(command)
    result = run(argv, env)
    printed = (result.stdout + result.stderr).splitlines()
    missing = [s for s in shown if s.strip() not in ("", "...") and not shown_in(s, printed)]
    assert not missing, f"{command}\nprinted:\n{result.stdout[-3000:]}\nnot printed: {missing}"
    replays = [s.split("replay: ", 1)[1] for s in shown if s.lstrip().startswith("replay: ")]
    for replay in replays:
        replay_env, replay_argv = to_argv(replay)
        replayed = run(replay_argv, replay_env)
        assert replayed.returncode == 1, replayed.stdout + replayed.stderr
        assert "FAIL" in replayed.stdout, replayed.stdout


def check_compare(command: str, tmp_path: Path) -> None:
    # The command's globs name two autosaved runs; put two recorded same-commit runs there.
    recorded = sorted((ROOT / "tests").rglob("*same_commit*.json"))[:2]
    assert len(recorded) == 2, "tests/data/gate's same-commit runs moved"
    machine = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    for number, source in enumerate(recorded, start=1):
        shutil.copy(source, machine / f"{number:04d}_run.json")
    env, argv = to_argv(command)
    expanded = [
        str(p) for word in argv for p in ("*" in word and sorted(tmp_path.glob(word)) or [word])
    ]
    result = run(expanded, env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_commands_run(tmp_path):
    _, commands = readme_commands()
    assert commands
    for command, shown in commands:
        if command.rstrip().endswith(NEEDS_GPU):
            continue
        if shown:
            check_console(command, shown)
        elif " -m verify.compare " in command:
            check_compare(command, tmp_path)
        elif command.startswith(".venv/bin/pytest "):
            env, argv = to_argv(command)
            result = run([*argv, "--collect-only", "-q"], env)
            assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}{result.stderr}"
        else:
            pytest.fail(f"README command with no rule to check it: {command}")


def test_the_readme_example_variant_passes_the_suite():
    """`examples/my_kernel.py`, the variant file the README hands a newcomer, passes the `ci` run
    its one command starts (the command test above only collects it): a template that fails
    would teach that the suite cries wolf."""
    from tests.helpers import run_cli

    proc = run_cli(
        ["-m", "pytest", "verify", "-q", "-p", "no:cacheprovider"]
        + ["--variant", "examples/my_kernel.py:VARIANT"],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
