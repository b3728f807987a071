"""The serving image's Dockerfile, checked without a Docker engine.

The static tests parse the Dockerfile. ``test_image_command_serves`` rebuilds
what the image would hold in a plain virtual environment (the Dockerfile's
COPY sources and its ``pip install`` line, so PyTorch is absent) and runs the
image's CMD against a model exported to ONNX.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sentiment_lstm.cli import main
from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
MODEL_ARG = "MODEL_DIR"
STARTUP_SECONDS = 60
PIP_SECONDS = 900


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions, dropping comments and blank lines."""
    instructions = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    return instructions


def instructions(keyword: str) -> list[Instruction]:
    return [i for i in parse_dockerfile(DOCKERFILE) if i.keyword == keyword]


def copy_parts(instruction: Instruction) -> tuple[list[str], str]:
    """Return the (sources, destination) of a COPY, without its --flags."""
    words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
    return words[:-1], words[-1]


def is_model_arg(source: str) -> bool:
    return source in (f"${MODEL_ARG}", f"${{{MODEL_ARG}}}")


def exec_form(instruction: Instruction) -> list[str]:
    """Parse a JSON (exec form) CMD, failing on the shell form."""
    arguments = instruction.arguments
    if instruction.keyword == "HEALTHCHECK":
        arguments = arguments.split(" CMD ", 1)[1]
    command = json.loads(arguments)
    assert isinstance(command, list), f"line {instruction.line} is not exec form"
    return command


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_build_backend_reads_license_string():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    requires = pyproject["build-system"]["requires"]
    minimum = [
        int(requirement.split(">=")[1].split(".")[0])
        for requirement in requires
        if requirement.startswith("setuptools>=")
    ]

    # setuptools reads a license given as an SPDX string (PEP 639) from
    # version 77.0.0 on (its changelog). setuptools 66 rejects the whole
    # pyproject.toml.
    assert isinstance(pyproject["project"]["license"], str)
    assert minimum
    assert minimum[0] >= 77


def test_base_image():
    (base,) = instructions("FROM")

    assert base.arguments == "python:3.11-slim"


def test_model_arg_default():
    arguments = [i.arguments for i in instructions("ARG")]

    assert f"{MODEL_ARG}=models/rt-polarity" in arguments


def test_copy_sources_exist():
    copies = instructions("COPY")

    assert copies
    for copy in copies:
        sources, _ = copy_parts(copy)
        for source in sources:
            if is_model_arg(source):
                continue
            assert (REPO_ROOT / source).exists(), f"line {copy.line}: {source}"


def test_model_copied_to_model():
    destinations = [
        copy_parts(copy)[1]
        for copy in instructions("COPY")
        if any(is_model_arg(source) for source in copy_parts(copy)[0])
    ]

    assert destinations == ["/model"]


@pytest.mark.parametrize("exported", [True, False])
def test_build_checks_model_exported(tmp_path, exported):
    # The RUN that follows the model's COPY, with /model pointing at a folder
    # of this test, as sh runs it in the image.
    steps = parse_dockerfile(DOCKERFILE)
    copy_index = next(
        index
        for index, step in enumerate(steps)
        if step.keyword == "COPY" and any(map(is_model_arg, copy_parts(step)[0]))
    )
    check = steps[copy_index + 1]
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    if exported:
        (model / "model.onnx").write_bytes(b"onnx")

    result = subprocess.run(
        ["sh", "-c", check.arguments.replace("/model/", f"{model}/")],
        env={**os.environ, MODEL_ARG: "models/rt-polarity"},
        capture_output=True,
        text=True,
    )

    assert check.keyword == "RUN"
    assert "/model/model.onnx" in check.arguments
    assert result.returncode == (0 if exported else 1)
    if not exported:
        assert result.stderr.strip() == (
            "models/rt-polarity has no model.onnx; run 'sentiment-lstm export "
            "--model models/rt-polarity' and build again"
        )


def test_dockerignore_keeps_sources():
    patterns = ignore_patterns()

    for copy in instructions("COPY"):
        for source in copy_parts(copy)[0]:
            name = "models/rt-polarity" if is_model_arg(source) else source
            for pattern in patterns:
                assert not fnmatch.fnmatch(name, pattern), f"{pattern} drops {name}"


def test_installs_serve_extra_only():
    installs = [i for i in instructions("RUN") if "pip install" in i.arguments]

    assert len(installs) == 1
    arguments = shlex.split(installs[0].arguments)
    assert ".[serve]" in arguments
    assert "torch" not in installs[0].arguments
    assert not [word for word in arguments if "train]" in word or "train," in word]


def constraint_pins() -> dict[str, str]:
    """Return the package versions that serve-constraints.txt pins."""
    lines = (REPO_ROOT / "serve-constraints.txt").read_text().splitlines()
    return {
        line.split("==")[0]: line.split("==")[1]
        for line in lines
        if line and not line.startswith("#")
    }


def canonical_name(name: str) -> str:
    """Return a package name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_install_uses_tested_versions():
    (install,) = [i for i in instructions("RUN") if "pip install" in i.arguments]
    arguments = shlex.split(install.arguments)
    constraints = arguments[arguments.index("--constraint") + 1]
    pins = constraint_pins()

    assert constraints == "serve-constraints.txt"

    assert constraints in [
        source for copy in instructions("COPY") for source in copy_parts(copy)[0]
    ]
    for name in ("uvicorn", "httptools", "fastapi", "onnxruntime"):
        assert pins[name].count(".") >= 1, name


def test_runs_as_non_root():
    users = instructions("USER")

    assert users
    assert users[-1].arguments not in ("root", "0")


def test_healthcheck_uses_python():
    (check,) = instructions("HEALTHCHECK")
    command = exec_form(check)

    assert command[0] == "python"
    assert "/health" in command[-1]


def test_cmd_listens_on_all_interfaces():
    (cmd,) = instructions("CMD")
    command = exec_form(cmd)

    assert command[:2] == ["sentiment-lstm", "serve"]
    assert command[command.index("--model") + 1] == "/model"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_build_sources(target: Path) -> None:
    """Copy what the Dockerfile's COPY lines take from the repository."""
    patterns = [pattern.split("/")[-1] for pattern in ignore_patterns()]
    for copy in instructions("COPY"):
        sources, destination = copy_parts(copy)
        if any(is_model_arg(source) for source in sources):
            continue
        for source in sources:
            origin = REPO_ROOT / source
            if destination.endswith("/") or len(sources) > 1:
                place = target / destination / origin.name
            else:
                place = target / destination
            if origin.is_dir():
                shutil.copytree(origin, place, ignore=shutil.ignore_patterns(*patterns))
            else:
                place.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, place)


def image_command(venv: Path, model_dir: Path, port: int) -> list[str]:
    """The image's CMD with the model, host and port replaced for this test."""
    (cmd,) = instructions("CMD")
    command = exec_form(cmd)
    command[0] = str(venv / "bin" / command[0])
    command[command.index("--model") + 1] = str(model_dir)
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    return command


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A tiny model with model.onnx, made with the development install."""
    if importlib.util.find_spec("sentiment_lstm.export") is None:
        pytest.skip("sentiment_lstm.export is not available, so no model.onnx")
    root = tmp_path_factory.mktemp("container-model")
    (root / "tiny.pos").write_text("\n".join(POSITIVE_REVIEWS * 6) + "\n")
    (root / "tiny.neg").write_text("\n".join(NEGATIVE_REVIEWS * 6) + "\n")
    directory = root / "model"
    train = ["train", "--data", str(root / "tiny.pos"), "--output-dir", str(directory)]
    assert main(train + ["--num-epochs", "1", "--lstm-units", "8"]) == 0
    from sentiment_lstm.export import export_model

    export_model(directory)
    assert (directory / "model.onnx").is_file()
    return directory


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the image's ``pip install`` applied."""
    root = tmp_path_factory.mktemp("image")
    workdir = root / "src"
    copy_build_sources(workdir)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (install,) = [i for i in instructions("RUN") if "pip install" in i.arguments]
    environment = dict(
        os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    )
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        ["bash", "-c", install.arguments],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=PIP_SECONDS,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


@pytest.mark.slow  # pip installs the serve extra from PyPI into a new venv
def test_serve_venv_lacks_torch(serve_venv):
    result = subprocess.run(
        [str(serve_venv / "bin" / "python"), "-c", "import torch"],
        capture_output=True,
        text=True,
    )

    assert result.returncode != 0
    assert "No module named 'torch'" in result.stderr


@pytest.mark.slow  # pip installs the serve extra from PyPI into a new venv
def test_serve_venv_packages_all_pinned(serve_venv):
    # Unpinned packages could change the image between two builds.
    result = subprocess.run(
        [str(serve_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {
        canonical_name(package["name"]): package["version"]
        for package in json.loads(result.stdout)
    }
    pins = {
        canonical_name(name): version for name, version in constraint_pins().items()
    }

    for name in ("sentiment-lstm", "pip", "setuptools", "wheel"):
        installed.pop(name, None)
    assert sorted(set(installed) - set(pins)) == []
    for name, version in installed.items():
        assert pins[name] == version, name


@pytest.mark.slow  # pip installs the serve extra from PyPI into a new venv
def test_serve_venv_imports_server(serve_venv):
    result = subprocess.run(
        [str(serve_venv / "bin" / "python"), "-c", "import sentiment_lstm.server"],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # pip installs the serve extra from PyPI into a new venv
def test_image_command_serves(serve_venv, onnx_model, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with open(log, "wb") as stream:
        process = subprocess.Popen(
            image_command(serve_venv, onnx_model, port),
            stdout=stream,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        health = None
        deadline = time.monotonic() + STARTUP_SECONDS
        while health is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                health = httpx.get(f"{url}/health", timeout=1)
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None, log.read_text()
        reviews = [POSITIVE_REVIEWS[0], ""]
        predicted = httpx.post(f"{url}/predict", json={"reviews": reviews}, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=10)

    predictions = predicted.json()["predictions"]
    assert health.status_code == 200
    assert health.json()["backend"] == "onnx"
    assert predicted.status_code == 200
    assert [p["text"] for p in predictions] == reviews
    assert predictions[0]["label"] in ("positive", "negative")
    assert predictions[1]["error"]
