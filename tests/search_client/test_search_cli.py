"""The CLI: a two-process torchrun search (identical logits on both ranks), derive / predict / train, and
one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from search_client.cli.main import main
from shared.spaces import get_space

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
SMALL = ["--resolution", "32", "--dataset", "digits", "--batch-size", "32", "--warmup-epochs", "1",
         "--epochs", "1", "--steps-per-epoch", "4", "--arch-every", "2", "--no-progress", "--threads", "1",
         "--arch-skip-epochs", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, entries) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    table = tmp / "table.json"
    table.write_text(json.dumps({"entries": {k: {"median_ms": v} for k, v in entries.items()}}))
    out = tmp / "out"
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "search_client", "search", "--table-file", str(table), "--target-ms", "30", "--arch-lr", "0.05",
           "--out", str(out), "--dump-alphas", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_ranks_end_with_identical_logits_and_one_derived_arch(ddp_run):
    a0 = torch.load(ddp_run / "rank0_alphas.pt")
    a1 = torch.load(ddp_run / "rank1_alphas.pt")
    assert len(a0) == len(a1) == 21
    for x, y in zip(a0, a1, strict=True):
        assert torch.equal(x, y)
    assert max(float(x.abs().max()) for x in a0) > 0.01  # arch steps happened (init is N(0, 1e-3))
    arch = json.loads((ddp_run / "derived" / "arch.json").read_text())
    names = [layer.candidates for layer in get_space("proxyless-mobile", 32, 1.0, 10).layers]
    assert arch["choices"] == [n[int(x.argmax())] for n, x in zip(names, a1, strict=True)]
    log = [json.loads(line) for line in (ddp_run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1]  # rank 0 alone writes
    assert (ddp_run / "derived" / "model.onnx").is_file()


def test_derive_predict_and_train_commands(ddp_run, table_file, tmp_path, capsys):
    assert main(["derive", str(ddp_run / "ckpt.pt"), "--out", str(tmp_path / "d"), "--no-onnx"]) == 0
    arch_path = tmp_path / "d" / "arch.json"
    assert arch_path.is_file() and (tmp_path / "d" / "net.config").is_file()
    assert main(["predict", str(arch_path), "--table-file", str(table_file)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "d" / "derive.json").read_text())
    assert f"predicted {summary['predicted_ms']:.3f} ms" in out
    # the ProxylessNAS net.config reads back as the same architecture
    assert main(["predict", str(tmp_path / "d" / "net.config"), "--table-file", str(table_file)]) == 0
    assert f"predicted {summary['predicted_ms']:.3f} ms" in capsys.readouterr().out
    assert main(["train", str(arch_path), "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "t"),
                 "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "t" / "model.pt", weights_only=False)
    assert ckpt["arch"]["choices"] == summary["choices"] and 0.0 <= ckpt["test_acc"] <= 1.0


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_keys_is_one_line_and_exit_2(tmp_path, entries, capsys):
    partial = dict(list(entries.items())[: len(entries) // 2])
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(partial))
    code, err = run_cli(["search", "--table-file", str(path), "--out", str(tmp_path / "o"), *SMALL], capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert f"lacks {len(entries) - len(partial)} key(s)" in err and "more" in err


def test_impossible_max_ms_is_refused(tmp_path, table_file, capsys):
    code, err = run_cli(["search", "--table-file", str(table_file), "--max-ms", "1", "--out",
                         str(tmp_path / "o"), *SMALL], capsys)
    assert code == 2 and "max_ms=1" in err and "fastest architecture" in err


@pytest.mark.parametrize("args, needle", [
    (["search", "--target-ms", "30", "--out", "x"], "latency table"),
    (["search", "--profiler", "http://127.0.0.1:9", "--out", "x"], "--table"),
    (["derive", "/nonexistent/ckpt.pt"], "does not exist"),
    (["predict", "/nonexistent/arch.json", "--table-file", "/nonexistent/t.json"], "No such file"),
])
def test_bad_inputs_are_one_line_errors(args, needle, capsys):
    code, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("error: ") and needle in err and len(err.splitlines()) == 1


def test_main_module_runs_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "search_client", "derive", str(tmp_path / "none.pt")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_mul_log_under_one_microsecond_is_refused_before_training(tmp_path, entries, capsys):
    path = tmp_path / "fast.json"  # an impossible device: the whole space runs under 1 us
    path.write_text(json.dumps({k: v / 1e6 for k, v in entries.items()}))
    code, err = run_cli(["search", "--table-file", str(path), "--target-ms", "30", "--loss", "mul#log",
                         "--out", str(tmp_path / "o"), *SMALL], capsys)
    assert code == 2 and "add#linear" in err and "microseconds" in err
    assert not (tmp_path / "o" / "log.jsonl").exists()


def test_predict_prints_the_calibrated_prediction_beside_the_raw_sum(tmp_path, entries, capsys):
    from search_client.latency.model import LatencyModel
    from shared.arch import make_arch

    space = get_space("proxyless-mobile", 32, 1.0, 10)
    choices = [layer.candidates[0] for layer in space.layers]
    arch_path = tmp_path / "arch.json"
    arch_path.write_text(make_arch(space, choices).model_dump_json())
    raw = LatencyModel(entries, space).predict(choices)
    table = tmp_path / "cal.json"
    table.write_text(json.dumps({"id": "t", "entries": {k: {"median_ms": v} for k, v in entries.items()},
                                 "calibration": {"intercept_ms": 1.5, "scale": 0.5}}))
    assert main(["predict", str(arch_path), "--table-file", str(table)]) == 0
    out = capsys.readouterr().out
    assert f"predicted {1.5 + 0.5 * raw:.3f} ms calibrated" in out and f"raw table sum {raw:.3f} ms" in out


def _limited_writes(limit: int) -> None:
    """In the child: every file it writes stops at ``limit`` bytes (EFBIG), as a full disk stops them."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_write_that_fails_is_named_in_one_line(tmp_path, table_file):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "search_client", "search", "--table-file", str(table_file), "--out", str(out), *SMALL]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=500, env={**os.environ,
                          "OMP_NUM_THREADS": "1"}, preexec_fn=lambda: _limited_writes(256 * 1024))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and err and err[-1].startswith(f"error: could not write {out / 'ckpt.pt'}: "), \
        proc.stderr[-2000:]
    assert "File too large" in err[-1] and "nothing was replaced" in err[-1]
    assert "Traceback" not in proc.stderr and "JSONDecode" not in proc.stderr
    assert not list(out.glob(".*tmp*"))  # no half-written checkpoint left beside it
    # the log holds whole records only, and a resumed or reported run reads it
    from shared.files import read_json_lines

    assert [r["epoch"] for r in read_json_lines(out / "log.jsonl")] == [0]
