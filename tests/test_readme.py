"""The README as documentation that works: every code block in it runs as written on this checkout.

Bash blocks run line by line in a scratch folder that holds the checkout's samples/ (and, as
../shared/datasets, the real datasets when present), with the digitlab of this interpreter; python
blocks run in the same kind of folder. What is not run, and why: pip installs and venv set-up (this
environment is already installed), `python -m pytest` (it is what runs this test). `digitlab train`
gets --dry-run (one epoch on 512 images per split). A block that names ../shared/datasets skips
without them.
"""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
SETUP = re.compile(r"^(python3? -m venv \S+|\. \S+/bin/activate|pip install .*)$")
DATASETS = "../shared/datasets"


def readme_blocks() -> list[tuple[str, str, str, int]]:
    """(section, language, code, line number) of each fenced block, in order."""
    text = README.read_text()
    out = []
    for m in BLOCK.finditer(text):
        before = text[: m.start()]
        section = re.findall(r"^## (.+)$", before, re.M)[-1] if "\n## " in before else ""
        out.append((section, m.group(1), m.group(2), before.count("\n") + 1))
    return out


def quickstart_commands() -> list[str]:
    return [code.rstrip("\n") for section, lang, code, _ in readme_blocks() if section == "Quickstart"]


def commands(code: str) -> list[str]:
    """The block's commands as a user would type them (backslash continuations joined), with what this
    test does not run dropped: set-up steps of a `&&` chain, and pytest."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        steps = [s.strip() for s in line.split(" && ") if not SETUP.match(s.strip())]
        command = " && ".join(steps)
        if command and not command.lstrip().startswith(("#", "python -m pytest")):
            out.append(command)
    return out


def tiny(command: str) -> str:
    """The command with tiny settings where it trains."""
    if re.match(r"digitlab train(\s|$)", command) and "--dry-run" not in command:
        return command + " --dry-run"
    return command


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A folder laid out like the checkout for the README's commands: samples/ and ../shared/datasets."""
    work = tmp_path / "digitlab"
    work.mkdir()
    (work / "samples").symlink_to(REPO / "samples")
    if SHARED_DATA.is_dir():
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "datasets").symlink_to(SHARED_DATA.resolve())
    return work


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("DIGITLAB_CHECKPOINT", None)  # the README's commands mean the bundled reader
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{shlex.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def run_block(lang: str, code: str, cwd: Path) -> str:
    """Run one block in cwd; returns what it printed."""
    if DATASETS in code and not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"needs the real datasets at {SHARED_DATA}")
    if lang == "python":
        (cwd / "readme_block.py").write_text(code)
        return run([sys.executable, "readme_block.py"], cwd).stdout
    return "".join(run(["bash", "-c", f"set -euo pipefail\n{tiny(c)}"], cwd).stdout for c in commands(code))


RUNNABLE = [(s, lang, code, n) for s, lang, code, n in readme_blocks() if s != "Quickstart" and lang != "text"]


def test_every_block_says_its_language():
    assert {lang for _, lang, _, _ in readme_blocks()} <= {"bash", "python", "text"}


def test_readme_is_short():
    assert len(README.read_bytes()) < 18_000  # what it does and how, per feature; the details live in docs/


def test_quickstart_is_two_commands_and_ci_runs_the_test_one():
    main_job, tests = quickstart_commands()
    assert "\n" not in main_job and "\n" not in tests
    assert "digitlab read samples/" in main_job and "python -m pytest" in tests
    venvs = [re.search(r"-m venv (\S+)", c).group(1) for c in (main_job, tests)]
    assert venvs[0] != venvs[1], "the two commands use separate virtual environments"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "the README's test command must appear verbatim in .ci/run"


def test_quickstart_main_job_reads_the_samples(workdir):
    """The main job after its installs: the bundled reader reads every sample right, offline, and writes
    each one annotated."""
    main_job = quickstart_commands()[0]
    (command,) = commands(main_job)
    out = run(["bash", "-c", command], workdir).stdout
    labels = dict(line.split(",") for line in (REPO / "samples" / "labels.csv").read_text().split()[1:])
    assert len(labels) == 3
    for name, text in labels.items():
        assert re.search(rf"{name}: {text}\b", out), out
        assert (workdir / "runs" / "samples" / f"annotated-{Path(name).stem}.png").stat().st_size > 1000


@pytest.mark.parametrize("section, lang, code, line", RUNNABLE, ids=[f"line{n}-{lang}" for _, lang, _, n in RUNNABLE])
def test_readme_block_runs(workdir, section, lang, code, line):
    bundled = sorted((REPO / "src" / "digitlab" / "pretrained").rglob("*"))
    out = run_block(lang, code, workdir)
    assert sorted((REPO / "src" / "digitlab" / "pretrained").rglob("*")) == bundled, "wrote into the package"
    if "samples/amount.png" in code:
        assert "316072" in out, out  # what samples/labels.csv says it holds


def test_results_table_is_generated_from_the_benchmark_json():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "benchmarks" / "readme_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    readme = README.read_text()
    assert tables.with_table(readme, tables.results_table()) == readme, \
        "README.md's results table is edited by hand or stale: run python benchmarks/readme_tables.py"
    doc = tables.EXPERIMENTS_DOC.read_text()
    assert tables.with_table(doc, tables.experiments_section(), tables.EXP_START, tables.EXP_END) == doc, \
        "docs/experiments.md's results are edited by hand or stale: run python benchmarks/readme_tables.py"


def test_committed_results_and_checkpoints_name_no_machine_paths():
    machine = re.compile(r"/(tmp|work|root|home)/")
    files = [*(REPO / "benchmarks" / "results").glob("*.json"), *(REPO / "benchmarks" / "results").glob("*.md"),
             *(REPO / "src" / "digitlab" / "pretrained").rglob("*.json"),
             *(REPO / "src" / "digitlab" / "pretrained").rglob("*.md")]
    assert files
    found = [f"{f.relative_to(REPO)}: {m.group(0)}" for f in files if (m := machine.search(f.read_text()))]
    assert not found, found
