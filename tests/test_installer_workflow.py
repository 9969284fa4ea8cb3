"""The installers workflow is valid GitHub Actions YAML and builds with the same script as `make installer`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "installers.yml"

# The workflow syntax, as far as this file uses it (docs.github.com, "Workflow syntax for
# GitHub Actions"): allowed keys at each level, and which are required.
WORKFLOW_KEYS = {"name", "on", "permissions", "env", "concurrency", "jobs", "defaults", "run-name"}
JOB_KEYS = {"name", "runs-on", "needs", "if", "steps", "strategy", "env", "timeout-minutes", "defaults",
            "permissions", "outputs", "continue-on-error", "environment", "concurrency", "container", "services"}
STEP_KEYS = {"id", "name", "if", "uses", "run", "with", "env", "shell", "working-directory",
             "continue-on-error", "timeout-minutes"}
EVENTS = {"push", "pull_request", "workflow_dispatch", "schedule", "release", "workflow_call"}
SHELLS = {"bash", "pwsh", "powershell", "sh", "cmd", "python"}


@pytest.fixture(scope="module")
def workflow() -> dict:
    text = WORKFLOW.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    # YAML 1.1 reads the bare key `on` as boolean True; GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _expressions(text: str) -> list[str]:
    return re.findall(r"\$\{\{(.*?)\}\}", text)


def test_top_level_structure(workflow: dict) -> None:
    assert set(workflow) <= WORKFLOW_KEYS, set(workflow) - WORKFLOW_KEYS
    assert {"name", "on", "jobs"} <= set(workflow)
    assert set(workflow["on"]) <= EVENTS
    assert "workflow_dispatch" in workflow["on"]
    assert workflow["permissions"] == {"contents": "read"}  # least privilege


def test_jobs_and_steps_follow_the_syntax(workflow: dict) -> None:
    for job_id, job in workflow["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", job_id)
        assert set(job) <= JOB_KEYS, set(job) - JOB_KEYS
        assert "runs-on" in job and job["steps"]
        ids = [s["id"] for s in job["steps"] if "id" in s]
        assert len(ids) == len(set(ids)), "step ids must be unique"
        for step in job["steps"]:
            assert set(step) <= STEP_KEYS, (step.get("name"), set(step) - STEP_KEYS)
            assert ("uses" in step) != ("run" in step), f"step {step.get('name')!r} needs exactly one of uses/run"
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), f"unpinned action {step['uses']}"
                assert "shell" not in step
            if "shell" in step:
                assert step["shell"] in SHELLS
            for key in ("with", "env"):
                if key in step:
                    assert isinstance(step[key], dict)


def test_expressions_are_balanced_and_refer_to_known_contexts(workflow: dict) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert text.count("${{") == text.count("}}")
    contexts = {"secrets", "matrix", "github", "runner", "steps", "env", "inputs", "needs", "job", "vars"}
    for expression in _expressions(text):
        for name in re.findall(r"\b([a-z]+)\.", expression):
            assert name in contexts, expression
    step_ids = {s["id"] for s in _steps(workflow) if "id" in s}
    for used in re.findall(r"steps\.([\w-]+)\.outputs", text):
        assert used in step_ids


def test_matrix_covers_linux_windows_and_apple_silicon(workflow: dict) -> None:
    include = workflow["jobs"]["build"]["strategy"]["matrix"]["include"]
    runners = [entry["os"] for entry in include]
    assert any(r.startswith("ubuntu") for r in runners)
    assert any(r.startswith("windows") for r in runners)
    # macos-14 and later are arm64 runners; onnxruntime has no x86_64 macOS wheel.
    mac = [r for r in runners if r.startswith("macos")]
    assert mac and all(r == "macos-latest" or int(r.split("-")[1]) >= 14 for r in mac)
    assert workflow["jobs"]["build"]["runs-on"] == "${{ matrix.os }}"
    assert workflow["jobs"]["build"]["strategy"]["fail-fast"] is False


def test_builds_with_the_same_script_as_make_installer(workflow: dict) -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\ninstaller:", 1)[1].split("\n\n", 1)[0]
    assert "installer/build.py" in target
    runs = [s["run"] for s in _steps(workflow) if "run" in s]
    build_runs = [r for r in runs if "installer/build.py" in r]
    assert build_runs, "the workflow must build through installer/build.py"
    assert any("--package" in r for r in build_runs)
    # The smoke test of the frozen app runs (build.py without --no-smoke does it).
    assert any("--no-smoke" not in r for r in build_runs)
    assert (REPO_ROOT / "installer" / "build.py").is_file()
    assert any('pip install -e ".[installer' in r for r in runs)


def test_smoke_tests_run_offscreen(workflow: dict) -> None:
    assert workflow["jobs"]["build"]["env"]["QT_QPA_PLATFORM"] == "offscreen"


def test_signing_only_when_secrets_exist(workflow: dict) -> None:
    steps = _steps(workflow)
    detector = next(s for s in steps if s.get("id") == "creds")
    assert "secrets." in str(detector.get("env", {}))
    for step in steps:
        body = str(step.get("run", "")) + str(step.get("with", ""))
        signs = any(word in body for word in ("security import", "codesign --verify", "windows_package.py verify"))
        if signs:
            assert "steps.creds.outputs" in str(step.get("if", "")), step["name"]
        # Secrets only ever reach a step through env, never interpolated into a script.
        assert "secrets." not in body, step.get("name")


def test_artifacts_are_uploaded(workflow: dict) -> None:
    upload = [s for s in _steps(workflow) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload
    paths = upload[0]["with"]["path"]
    assert "dist/installers/" in paths and "build-report.json" in paths
    assert "matrix.name" in upload[0]["with"]["name"]


def test_workflow_installs_no_torch(workflow: dict) -> None:
    runs = " ".join(s["run"] for s in _steps(workflow) if "run" in s)
    assert "torch" not in runs and "[train" not in runs and "dev,train" not in runs


@pytest.mark.parametrize("path", sorted(Path(REPO_ROOT / ".github" / "workflows").glob("*.y*ml")))
def test_every_workflow_file_parses(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)
