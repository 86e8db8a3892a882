"""``cim lab``: JupyterLab opens on notebooks/ and its kernels carry the installation and the analyst.

The real server is started on a free port; a kernel started through its REST API runs
``session_principal()`` over the kernel websocket, so the test sees what an analyst's notebook sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, Bank, run_cim


def _free_port() -> int:
    from cimlib.serve import free_port

    return free_port()


def _get(url: str, token: str, method: str = "GET", body: bytes | None = None) -> dict:
    req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


async def _execute(ws_url: str, token: str, code: str, timeout: float = 60) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    msg = {
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }  # fmt: skip
    await conn.write_message(json.dumps(msg))
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(conn.read_message(), timeout=deadline - time.monotonic())
        if raw is None:
            break
        m = json.loads(raw)
        if m.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = m.get("msg_type") or m["header"]["msg_type"]
        if kind == "stream":
            out.append(m["content"]["text"])
        elif kind == "error":
            out.append("ERROR " + m["content"]["ename"] + ": " + m["content"]["evalue"])
        elif kind == "status" and m["content"]["execution_state"] == "idle":
            break
    conn.close()
    return "".join(out)


def test_lab_dry_run_names_the_user_and_the_home(bank: Bank) -> None:
    out = json.loads(run_cim("lab", "--as", "county_mgr_101", "--no-browser", "--dry-run", "--json",
                             home=bank.home).stdout)  # fmt: skip
    assert out["env"] == {"CIM_HOME": str(bank.home), "CIM_USER": "county_mgr_101"}
    assert Path(out["root_dir"]) == ROOT / "notebooks"
    assert out["argv"][0].endswith("jupyter-lab") and "--no-browser" in out["argv"]
    bad = run_cim("lab", "--as", "nobody", "--dry-run", home=bank.home, check=False)
    assert bad.returncode == 2 and "not a user" in bad.stderr


def test_lab_kernel_runs_as_the_analyst_on_the_warehouse(bank: Bank, tmp_path: Path) -> None:
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "CIM_HOME": str(bank.home), "PYTHONPATH": str(ROOT), "JUPYTER_TOKEN": token,
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cimlib.cli", "lab", "--as", "county_mgr_101", "--no-browser",
         "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status = _get(f"{base}/api/status", token)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    pytest.fail(f"cim lab did not start (exit {proc.poll()}):\n{out[-3000:]}")
                time.sleep(0.5)
        assert "started" in status
        tree = _get(f"{base}/api/contents", token)
        names = {c["name"] for c in tree["content"]}
        assert {"explore", "apps"} <= names  # opened on the project's notebooks/
        kernel = _get(f"{base}/api/kernels", token, "POST", json.dumps({"name": "python3"}).encode())
        code = (
            "import os\n"
            "from cimlib.access import session_principal\n"
            "from cimlib.customer import _data as D\n"
            "p = session_principal()\n"
            "print('USER', p.user_id, p.scope, p.org_code)\n"
            "print('HOME', os.environ['CIM_HOME'])\n"
            "print('MONTHS', len(D.as_of_dates(D.snapshot(None))))\n"
        )
        ws = f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels"
        text = asyncio.run(_execute(ws, token, code))
        assert "USER county_mgr_101 county 101000" in text, text
        assert f"HOME {bank.home}" in text, text
        assert "MONTHS 4" in text, text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
