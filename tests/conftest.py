"""Shared pytest fixtures."""

from __future__ import annotations

import os
import socket
import sys

import pytest
import torch

from huggingface_hub import constants, hf_api

# Tiny models run faster on one thread, and the tests then leave the other core free.
torch.set_num_threads(1)

# The GPU check (benchmarks/gpu_check.py) runs the inference tests with their tensors and tiny models on a device.
if os.environ.get("HF_SPECDECPP_TEST_DEVICE"):
    torch.set_default_device(os.environ["HF_SPECDECPP_TEST_DEVICE"])



@pytest.fixture(scope="session", autouse=True)
def float32_by_default():
    """Tests compare in float32 on every CPU: "auto" dtypes must not turn into bfloat16 on CPUs with native bf16
    (test_training_pipeline tests that rule itself)."""
    from hf_specdecpp.core import device

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(device, "native_bf16_cpu", lambda: False)
        yield


try:  # tests/ is a rootdir conftest directory, not a package, unless someone adds an __init__.py
    from .hub_server import HubServer
except ImportError:
    from hub_server import HubServer

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _patch_hub_constant(monkeypatch: pytest.MonkeyPatch, name: str, value) -> None:
    """Set `huggingface_hub.constants.<name>` and every module-level copy of it (`from ..constants import NAME`).

    huggingface_hub reads its environment variables once, at import time, so setting the variable is not enough.
    """
    old = getattr(constants, name)
    monkeypatch.setattr(constants, name, value)
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if module is not constants and isinstance(namespace, dict) and name in namespace:
            try:
                if namespace[name] == old:
                    monkeypatch.setattr(module, name, value)
            except Exception:  # an exotic module attribute; not a copy of the constant
                continue


@pytest.fixture
def no_remote_hosts(monkeypatch):
    """Make any connection attempt to a host other than the loopback fail at once (the tests never go online)."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOCAL_HOSTS:
            raise OSError(f"tests must not reach the network (tried to resolve {name!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def hf_home(tmp_path, monkeypatch, no_remote_hosts):
    """An isolated, empty Hugging Face home (`HF_HOME`, hub cache in `<home>/hub`); returns the home path.

    Also points every cache/token path of huggingface_hub there, disables telemetry (which would otherwise fetch
    `{ENDPOINT}/api/agent-harnesses`) and starts online with a dummy token. Nothing touches `~/.cache`.
    """
    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    paths = {
        "HF_HOME": home,
        "HF_HUB_CACHE": cache,
        "HUGGINGFACE_HUB_CACHE": cache,  # legacy name, also a constant
        "HF_ASSETS_CACHE": home / "assets",
        "HF_XET_CACHE": home / "xet",
        "HF_TOKEN_PATH": home / "token",
        "HF_STORED_TOKENS_PATH": home / "stored_tokens",
        "AGENT_HARNESSES_PATH": home / ".agent_harnesses.json",
        "CHECK_FOR_UPDATE_DONE_PATH": home / ".check_for_update_done",
    }
    for name, path in paths.items():
        if name in ("HF_HOME", "HF_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH"):
            monkeypatch.setenv(name, str(path))
        if hasattr(constants, name):
            _patch_hub_constant(monkeypatch, name, str(path))
    for name in ("HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE",
                 "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_dummy_test_token")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # With no server, downloads must fail fast instead of going to the real Hub.
    _point_client_at(monkeypatch, "http://127.0.0.1:9")
    return home


def _point_client_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Send every huggingface_hub request to `endpoint` (env var, constants and their copies, the default HfApi)."""
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    _patch_hub_constant(monkeypatch, "ENDPOINT", endpoint)
    # `hf_hub_url` formats this template (built at import from ENDPOINT), not ENDPOINT itself.
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    _patch_hub_constant(monkeypatch, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    # The module-level `huggingface_hub.create_repo`, `upload_folder`, ... are methods of this import-time instance.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)


@pytest.fixture
def hub_server(hf_home, monkeypatch):
    """A live in-memory Hub on 127.0.0.1 that the real huggingface_hub client talks to; yields the `HubServer`.

    `server.url` is the endpoint, `server.state.repos[repo_id].files("main")` the stored files and
    `server.state.requests` the `(method, path)` log.
    """
    with HubServer() as server:
        _point_client_at(monkeypatch, server.url)
        yield server
