"""Secrets: a recognisable fake token must not reach any output hf_sgdr produces (logs at DEBUG, stdout and
stderr, the manifest, the model card, every file of a snapshot folder or a push, exception messages), on the
success path and on the error paths of a push (401 from the Hub, 500 on the commit), and in a training run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import transformers
from helpers.ensembles import REPO_ROOT, tiny_bert_folder
from helpers.hub import Recorder, _handler, online, recording_endpoint
from helpers.training import (
    byte_lm_data,
    tiny_gpt2,
    training_args,
)
from huggingface_hub.errors import HfHubHTTPError

from hf_sgdr.snapshots import SnapshotEnsemble
from hf_sgdr.training import SGDRTrainer

TOKEN = "hf_FAKEtoken1234567890SECRET"  # passed explicitly (hub_token=, token=)
ENV_TOKEN = "hf_FAKEenvTOKEN0987654321SECRET"  # in HF_TOKEN
SECRETS = (TOKEN, ENV_TOKEN, "FAKEtoken1234567890", "FAKEenvTOKEN0987654321")


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [secret for secret in SECRETS if secret.encode() in data]


def _files_with_secrets(root: Path) -> dict[str, list[str]]:
    """Every file under `root` (read as bytes, nothing unpickled) that holds a secret."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and _leaks(path.read_bytes()):
            found[path.relative_to(root).as_posix()] = _leaks(path.read_bytes())
    return found


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything at DEBUG, transformers' own loggers included (they do not propagate by default)."""
    transformers.logging.enable_propagation()
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_debug()
    caplog.set_level(logging.DEBUG)
    yield caplog
    transformers.logging.set_verbosity(level)
    transformers.logging.disable_propagation()


@pytest.fixture
def failing_hub(request: pytest.FixtureRequest) -> Iterator[tuple[str, Recorder]]:
    """The local Hub endpoint of helpers.hub, answering `request.param` = (path fragment, status) with an error
    whose body is what the Hub sends (an error message), e.g. ("/api/repos/create", 401)."""
    fragment, status = request.param
    recorder = Recorder()
    base = _handler(recorder)

    class Handler(base):  # type: ignore[misc, valid-type]
        def do_POST(self) -> None:
            if fragment in self.path:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append(("POST", self.path, dict(self.headers), b""))
                body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_POST()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", recorder
    server.shutdown()
    server.server_close()


def _exception_texts(error: BaseException) -> list[str]:
    """str, repr and the full formatted traceback (with every chained cause) of `error`."""
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def test_a_successful_push_leaks_no_token(
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    with recording_endpoint() as (endpoint, recorder):  # the plain, succeeding endpoint
        ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
        saved = ensemble.save_pretrained(tmp_path / "saved", repo_id="me/secret-test")
        with online():
            ensemble.push_to_hub("me/secret-test", endpoint=endpoint)
    # the token from HF_TOKEN was used, only in the Authorization header
    assert {headers.get("authorization") for _, _, headers, _ in recorder.requests} == {f"Bearer {ENV_TOKEN}"}
    assert all(not _leaks(path) and not _leaks(body) for _, path, _, body in recorder.requests)
    (commit,) = recorder.commits
    assert {"README.md", "manifest.json", "cycle-000/model.safetensors"} <= set(commit["files"])
    assert {name: _leaks(content) for name, content in commit["files"].items() if _leaks(content)} == {}
    assert (saved / "README.md").is_file() and _files_with_secrets(saved) == {}
    out, err = capsys.readouterr()
    assert _leaks(debug_logs.text) == _leaks(out) == _leaks(err) == []
    assert "HTTP Request: POST" in debug_logs.text  # the HTTP client's logs were captured, at DEBUG too
    assert any(r.levelno == logging.DEBUG and r.name.startswith("httpcore") for r in debug_logs.records)


@pytest.mark.parametrize(
    "failing_hub", [("/api/repos/create", 401), ("/commit/", 500)], indirect=True, ids=["401-create", "500-commit"]
)
def test_a_failed_push_leaks_no_token(
    failing_hub: tuple[str, Recorder], debug_logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, recorder = failing_hub
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    with online(), pytest.raises(HfHubHTTPError) as raised:
        ensemble.push_to_hub("me/secret-test", token=TOKEN, endpoint=endpoint)
    assert raised.value.response.status_code in (401, 500)
    assert recorder.requests and all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h, _ in recorder.requests)
    for text in _exception_texts(raised.value):
        assert _leaks(text) == []
    out, err = capsys.readouterr()
    assert _leaks(debug_logs.text) == _leaks(out) == _leaks(err) == []


@pytest.mark.parametrize("failing_hub", [("/api/repos/create", 401)], indirect=True, ids=["401-create"])
def test_the_cli_push_error_shows_no_token(failing_hub: tuple[str, Recorder]) -> None:
    endpoint, recorder = failing_hub
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": ENV_TOKEN, "HF_HUB_OFFLINE": "0"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["HF_HUB_VERBOSITY"] = "debug"
    result = subprocess.run(
        [sys.executable, "-m", "hf_sgdr.cli", "push", str(tiny_bert_folder()), "--repo-id", "me/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "401" in result.stderr  # it failed, and says why
    assert recorder.requests[0][2].get("authorization") == f"Bearer {ENV_TOKEN}"
    assert _leaks(result.stdout) == _leaks(result.stderr) == []


def test_a_training_run_writes_no_token_into_snapshots_logs_or_manifest(
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    args = training_args(
        tmp_path, max_steps=6, logging_steps=1, save_strategy="steps", save_steps=3, hub_token=TOKEN, log_level="debug"
    )
    trainer = SGDRTrainer(model=tiny_gpt2(), args=args, train_dataset=byte_lm_data(24), sgdr_T_0=3)
    trainer.train()
    out, err = capsys.readouterr()
    assert _leaks(debug_logs.text) == _leaks(out) == _leaks(err) == []
    assert _leaks(json.dumps(trainer.state.log_history)) == []
    assert (tmp_path / "snapshots" / "cycle-001" / "model.safetensors").is_file()
    assert _files_with_secrets(tmp_path / "snapshots") == {}  # the folder that gets pushed
    manifest = (tmp_path / "snapshots" / "manifest.json").read_text()
    assert _leaks(manifest) == [] and '"learning_rate"' in manifest
    # Everything else under output_dir is clean too, but for the stock Trainer's checkpoint `training_args.bin`:
    # transformers pickles the whole TrainingArguments, hub_token included (never the HF_TOKEN environment
    # variable). SECURITY.md says so: prefer HF_TOKEN / `hf auth login` to hub_token. Inspected as raw bytes.
    assert _files_with_secrets(tmp_path) == {
        "checkpoint-3/training_args.bin": [TOKEN, "FAKEtoken1234567890"],
        "checkpoint-6/training_args.bin": [TOKEN, "FAKEtoken1234567890"],
    }
