"""Tokens are redacted from everything hf_sgdr prints, logs or raises, even when a Hub endpoint echoes the
`Authorization` header back in its error (the stand-in endpoint of helpers.hub, on 127.0.0.1, is the network
edge: the client is huggingface_hub's real HTTP client)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from helpers.ensembles import REPO_ROOT, tiny_bert_folder
from helpers.hub import TOKEN, echoing_endpoint, online
from huggingface_hub.errors import HfHubHTTPError

from hf_sgdr.redaction import REDACTED, redact, redacting
from hf_sgdr.snapshots import SnapshotEnsemble

ENV_TOKEN = "hf_ENVsecretTOKEN5555aaaa6666bbbb"
SECRETS = (TOKEN, ENV_TOKEN, TOKEN[3:], ENV_TOKEN[3:])


def _leaks(*texts: str) -> list[str]:
    return [secret for secret in SECRETS for text in texts if secret in text]


def _exception_texts(error: BaseException) -> str:
    """str, repr and the whole formatted traceback with every chained cause."""
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.mark.parametrize("fragment", ["/api/repos/create", "/preupload/", "/commit/"])
@pytest.mark.parametrize("source", ["argument", "HF_TOKEN"])
def test_an_echoing_endpoint_gets_no_token_into_the_exception_logs_or_output(
    fragment: str,
    source: str,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = TOKEN if source == "argument" else None
    if source == "HF_TOKEN":
        monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    ensemble = SnapshotEnsemble.from_pretrained(tiny_bert_folder(), progress=False)
    with echoing_endpoint(fragment, 401) as (endpoint, recorder), online(), pytest.raises(HfHubHTTPError) as raised:
        ensemble.push_to_hub("me/x", token=token, endpoint=endpoint)
    echoed = [headers.get("authorization") for _, path, headers, _ in recorder.requests if fragment in path]
    assert echoed == [f"Bearer {token or ENV_TOKEN}"]  # the endpoint did get the token, and echoed it back
    assert "401" in str(raised.value) and REDACTED in str(raised.value)
    assert _leaks(_exception_texts(raised.value)) == []
    assert raised.value.response.request.headers["authorization"] == REDACTED  # not kept in the exception
    assert _leaks(debug_logs.text, *capsys.readouterr()) == []


def test_a_download_from_an_echoing_endpoint_raises_no_token(tmp_path: Path) -> None:
    with echoing_endpoint("", 401) as (endpoint, recorder), online(), pytest.raises(OSError) as raised:
        SnapshotEnsemble.from_pretrained("me/x", token=TOKEN, endpoint=endpoint, cache_dir=tmp_path)
    assert recorder.requests and _leaks(_exception_texts(raised.value)) == []


def test_the_cli_push_to_an_echoing_endpoint_ends_in_one_line_without_the_token() -> None:
    with echoing_endpoint("/commit/", 500) as (endpoint, recorder):
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": ENV_TOKEN, "HF_HUB_OFFLINE": "0"}
        env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_VERBOSITY="debug")
        result = subprocess.run(
            [sys.executable, "-m", "hf_sgdr.cli", "push", str(tiny_bert_folder()), "--repo-id", "me/x"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert any(headers.get("authorization") == f"Bearer {ENV_TOKEN}" for _, _, headers, _ in recorder.requests)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after huggingface_hub's own debug lines (HF_HUB_VERBOSITY)
    assert last.startswith("hf-sgdr push: error: the push to me/x failed: Server error '500") and REDACTED in last
    assert _leaks(result.stdout, result.stderr) == []


def test_log_records_are_redacted_while_a_token_is_in_use(debug_logs: pytest.LogCaptureFixture) -> None:
    other = logging.getLogger("some.library")
    with redacting(TOKEN):
        other.warning("echo: %s", f"Authorization: Bearer {TOKEN}")
        other.info("token=%s", TOKEN)
    other.info("after: %s", "plain text")
    assert _leaks(debug_logs.text) == [] and "after: plain text" in debug_logs.text
    assert debug_logs.text.count(REDACTED) == 2


def test_redact_hides_token_shapes_and_bearer_credentials() -> None:
    assert redact(f"x {ENV_TOKEN} y", tokens={"unrelated"}) == f"x {REDACTED} y"
    assert redact("Authorization: Bearer abc.def-ghi", tokens={"unrelated"}) == f"Authorization: Bearer {REDACTED}"
