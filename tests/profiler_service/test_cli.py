"""The CLI in-process: import, tables, export, a local profile run, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
import yaml
from profiler_helpers import PUBLISHED, SMALL_KEYS

from profiler_service.cli import main
from profiler_service.settings import BindError, Settings


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse's own usage errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_import_list_export(capsys, tmp_path, db_url):
    src = tmp_path / "mobile.yaml"
    src.write_text(PUBLISHED)
    rc, out, _ = run(capsys, "import", str(src), "--device", "pixel1", "--backend", "tflite", "--threads", "1",
                     "--batch", "1", "--db", db_url)
    assert rc == 0 and out.startswith("imported 6 entries into table ")
    table_id = out.split()[-1]
    rc, out, _ = run(capsys, "tables", "--db", db_url)
    assert rc == 0 and out.splitlines()[0].split()[:3] == ["ID", "DEVICE", "BACKEND"]
    assert table_id in out and "pixel1" in out and "tflite" in out
    dest = tmp_path / "out.yaml"
    assert run(capsys, "export", table_id, "--format", "yaml", "-o", str(dest), "--db", db_url)[0] == 0
    exported, published = yaml.safe_load(dest.read_text()), yaml.safe_load(PUBLISHED)
    assert {k: (v["count"], v["mean"]) for k, v in exported.items()} == {
        k: (v["count"], v["mean"]) for k, v in published.items()}
    rc, out, _ = run(capsys, "export", table_id, "--format", "json", "--db", db_url)
    assert rc == 0 and json.loads(out)["device"] == "pixel1"


def test_local_profile_stores_into_the_database(capsys, tmp_path, db_url, monkeypatch):
    for name, value in {"BUDGET_S": "0.2", "MIN_RUNS": "5", "WARMUP_RUNS": "2", "WARMUP_S": "0.01"}.items():
        monkeypatch.setenv(f"PROFILER_{name}", value)
    monkeypatch.setenv("PROFILER_CACHE_DIR", str(tmp_path / "cache"))
    keys = tmp_path / "keys.txt"
    keys.write_text("# two small ops\n" + "\n".join(SMALL_KEYS[:2]) + "\n")
    rc, out, err = run(capsys, "profile", "--keys-file", str(keys), "--backend", "onnxruntime", "--threads", "1",
                       "--batch", "1", "--db", db_url, "--device-name", "cli-box")
    assert rc == 0, err
    assert "done, 2/2 ops" in out
    rc, out, _ = run(capsys, "tables", "--db", db_url)
    row = next(line for line in out.splitlines() if "cli-box" in line).split()
    assert row[2:7] == ["onnxruntime", "1", "1", "float32", "2"]


@pytest.mark.parametrize(("argv", "words"), [
    (["export", "nope"], ["table 'nope' not found"]),
    (["import", "/no/such/file.yaml", "--device", "d", "--backend", "b"], ["cannot read"]),
    (["profile", "--space", "no-such-space", "--backend", "onnxruntime"], ["space", "unknown space"]),
    (["profile", "--space", "proxyless-mobile", "--resolution", "4"], ["resolution"]),
    (["profile", "--space", "proxyless-mobile", "--backend", "tensorflow"], ["backend"]),
    (["profile", "--keys-file", "KEYS", "--backend", "onnxruntime"], ["keys[1]", "kernel", "4"]),
    (["import", "BADYAML", "--device", "d", "--backend", "b"], ["yaml", "malformed"]),
    (["profile", "--space", "proxyless-mobile", "--threads", "0"], ["--threads", "positive integer"]),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, db_url, argv, words):
    (tmp_path / "keys.txt").write_text(SMALL_KEYS[0] + "\nsep_conv-input:8x8x16-output:8x8x16-kernel:4-stride:1\n")
    (tmp_path / "bad.yaml").write_text("a: {count: 1, mean: [1\n")
    argv = [{"KEYS": str(tmp_path / "keys.txt"), "BADYAML": str(tmp_path / "bad.yaml")}.get(a, a) for a in argv]
    rc, _, err = run(capsys, *argv, "--db", db_url)
    assert rc == 2
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    for w in words:
        assert w in last, err


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("PROFILER_MAX_CHANNELS", "512")
    monkeypatch.setenv("PROFILER_BUDGET_S", "0.5")
    s = Settings()
    assert s.limits.max_channels == 512 and s.protocol.budget_s == 0.5 and s.protocol.rel_ci == 0.02
    for host in ("127.0.0.1", "localhost", "::1"):
        s.check_bind(host)
    with pytest.raises(BindError, match="PROFILER_API_KEY"):
        s.check_bind("0.0.0.0")
    Settings(api_key="k").check_bind("0.0.0.0")


def test_a_blank_api_key_is_no_key(monkeypatch):
    monkeypatch.setenv("PROFILER_API_KEY", "  ")
    s = Settings()
    assert s.api_key is None
    with pytest.raises(BindError):
        s.check_bind("0.0.0.0")


def test_serve_with_an_unusable_database_is_one_line(capsys):
    rc, _, err = run(capsys, "serve", "--db", "nonsense://nowhere", "--port", "0")
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
