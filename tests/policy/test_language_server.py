"""The policy schema in a real editor's engine: Red Hat's yaml-language-server (what VS Code's YAML
extension runs), driven over stdio with the Language Server Protocol.

The server is installed from npm into a temporary folder (``GATE_YAML_LANGUAGE_SERVER`` may name an
installed ``bin/yaml-language-server`` instead); without node, npm or the network the tests are skipped.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gate.policy import PolicyValidationError, load_policy
from gate.policy.schema import policy_json_schema
from gate.policy.specs import ALL_CHECK_SPECS, kind_of

VERSION = "1.25.0"
pytestmark = pytest.mark.slow  # installs from npm and starts node


@pytest.fixture(scope="module")
def server_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if given := os.environ.get("GATE_YAML_LANGUAGE_SERVER"):
        return Path(given)
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs node and npm")
    folder = tmp_path_factory.mktemp("yaml-language-server")
    installed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(folder),
         f"yaml-language-server@{VERSION}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    script = folder / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
    if installed.returncode != 0 or not script.exists():
        pytest.skip(f"could not install yaml-language-server from npm: {installed.stderr[-500:]}")
    return script


class LanguageServer:
    """A client of just the LSP messages these tests need: open a document, ask for completion, collect
    the diagnostics the server publishes."""

    def __init__(self, script: Path, root: Path) -> None:
        self.process = subprocess.Popen(
            ["node", str(script), "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buffer = b""
        self._next_id = 0
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.request("initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {}})
        self.notify("initialized", {})

    def notify(self, method: str, params: Any) -> None:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode()
        self._write(body)

    def request(self, method: str, params: Any) -> Any:
        self._next_id += 1
        self._write(
            json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}).encode()
        )
        while True:
            message = self._read(timeout=60)
            if message.get("id") == self._next_id and "method" not in message:
                return message.get("result")
            self._handle(message)

    def open(self, uri: str, text: str) -> None:
        document = {"uri": uri, "languageId": "yaml", "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": document})

    def completion(self, uri: str, line: int, character: int) -> list[dict[str, Any]]:
        position = {"line": line, "character": character}
        result = self.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": position})
        return result["items"] if isinstance(result, dict) else result

    def wait_for_diagnostics(self, uri: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while uri not in self.diagnostics:
            self._handle(self._read(timeout=max(deadline - time.monotonic(), 0.1)))
        return self.diagnostics[uri]

    def _handle(self, message: dict[str, Any]) -> None:
        if message.get("method") == "textDocument/publishDiagnostics":
            params = message["params"]
            self.diagnostics[params["uri"]] = params["diagnostics"]
        elif "method" in message and "id" in message:  # a request of the server's: answer "no settings"
            items = message.get("params", {}).get("items", [None])
            result = [None] * len(items) if message["method"] == "workspace/configuration" else None
            self._write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode())

    def _write(self, body: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            header, separator, rest = self._buffer.partition(b"\r\n\r\n")
            if separator:
                fields = dict(line.split(": ", 1) for line in header.decode("ascii").split("\r\n"))
                length = int(fields["Content-Length"])
                if len(rest) >= length:
                    self._buffer = rest[length:]
                    return json.loads(rest[:length])
            ready, _, _ = select.select([self.process.stdout], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("yaml-language-server did not answer")
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError("yaml-language-server exited")
            self._buffer += chunk

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.process.wait(timeout=10)
        except (TimeoutError, RuntimeError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture(scope="module")
def editor(
    server_script: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LanguageServer, Path]]:
    root = tmp_path_factory.mktemp("workspace")
    (root / "gate-policy.schema.json").write_text(json.dumps(policy_json_schema(), indent=2))
    server = LanguageServer(server_script, root)
    try:
        yield server, root
    finally:
        server.close()


def write(root: Path, name: str, body: str) -> tuple[str, str]:
    """A policy whose first line points the server at the schema, as ``gate policy init`` writes it."""
    text = "# yaml-language-server: $schema=gate-policy.schema.json\n" + body
    (root / name).write_text(text)
    return (root / name).as_uri(), text


def test_completion_offers_every_kind_and_a_kind_s_fields(editor: tuple[LanguageServer, Path]) -> None:
    server, root = editor
    uri, text = write(root, "kinds.yaml", "version: 1\nchecks:\n  - id: a\n    kind: \n")
    server.open(uri, text)
    kinds = {item["label"] for item in server.completion(uri, 4, len("    kind: "))}
    assert kinds == {kind_of(spec) for spec in ALL_CHECK_SPECS}

    uri, text = write(root, "fields.yaml", "version: 1\nchecks:\n  - id: a\n    kind: adversarial\n    \n")
    server.open(uri, text)
    items = {item["label"]: item for item in server.completion(uri, 5, 4)}
    assert {"epsilon", "attack", "norm", "min", "severity"} <= set(items)
    documentation = json.dumps(items["epsilon"].get("documentation", ""))
    assert "perturbation budget" in documentation  # the schema's description reaches the editor


def test_structural_diagnostics_are_where_gate_policy_validate_puts_them(
    editor: tuple[LanguageServer, Path],
) -> None:
    server, root = editor
    uri, text = write(
        root,
        "broken.yaml",
        "version: 1\nsampels: 10\nchecks:\n  - id: a\n    kind: accuracy\n    min: 0.9\n    mni: 0.9\n"
        "  - id: b\n    kind: acuracy\n    min: 0.5\n",
    )
    server.open(uri, text)
    diagnostics = server.wait_for_diagnostics(uri)
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(root / "broken.yaml")
    gate_lines = {problem.position.line for problem in caught.value.problems}
    assert gate_lines == {3, 8, 10}  # sampels, mni, acuracy (1-based, under the schema comment)
    assert {diagnostic["range"]["start"]["line"] + 1 for diagnostic in diagnostics} == gate_lines
    sources = " ".join(diagnostic.get("source", "") + diagnostic["message"] for diagnostic in diagnostics)
    assert "Spec" not in sources and "PolicyDocument" not in sources  # no class names in an editor
