"""The search at scale on a real JPEG folder: 224 px with workers and bf16, a mid-epoch stop and resume
that reproduces the uninterrupted run exactly, SIGTERM, the official recipe, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from search_client.cli.main import main
from search_client.engine import checkpoint
from search_client.engine.search import SearchConfig, search
from tests.image_folders import write_folder

REPO = Path(__file__).resolve().parents[2]
CLASSES = 3


@pytest.fixture(scope="module")
def table(entries_for):
    def write(path: Path, resolution: int) -> Path:
        entries = entries_for(resolution, CLASSES)
        path.write_text(json.dumps({"entries": {k: {"median_ms": v} for k, v in entries.items()}}))
        return path

    return write


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes x 5 JPEGs, nested, non-square: 2 held out for test, 2 for valid, 11 to train on."""
    root = tmp_path_factory.mktemp("jpegs")
    write_folder(root, per_class=5, size=(72, 56), nested=True)
    return root


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_search_on_a_jpeg_folder_at_224_px_with_workers_and_bf16(folder, table, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--dataset", "imagefolder", "--data-dir", str(folder), "--resolution", "224",
                 "--table-file", str(table(tmp_path / "t.json", 224)), "--target-ms", "300",
                 "--workers", "2", "--amp", "bf16", "--batch-size", "2", "--warmup-epochs", "0", "--epochs", "1",
                 "--arch-skip-epochs", "0", "--steps-per-epoch", "2", "--valid-size", "2", "--threads", "1",
                 "--no-progress", "--no-onnx", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "search configuration:" in printed and "global batch 1 x 2 = 2" in printed
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["config"]["amp"] == "bf16" and resolved["resolved"]["workers"] == 2
    assert resolved["resolved"]["valid_images"] == 2 and resolved["resolved"]["mean"] is not None
    (line,) = read_log(out)
    assert line["step"] == 2 and line["arch_steps"] == 2 and line["skipped_images"] == 0
    arch = json.loads((out / "derived" / "arch.json").read_text())
    assert arch["resolution"] == 224 and arch["num_classes"] == CLASSES and len(arch["choices"]) == 21


def small(folder: Path, out: Path, **kw) -> SearchConfig:
    base = dict(dataset="imagefolder", data_dir=str(folder), resolution=32, batch_size=2, valid_size=2,
                warmup_epochs=1, epochs=1, steps_per_epoch=4, arch_every=1, arch_skip_epochs=0, arch_lr=0.2,
                target_ms=30.0, num_workers=1, progress=False, out=str(out))
    base.update(kw)
    return SearchConfig(**base)


def assert_same_end(a: Path, b: Path) -> None:
    ca, cb = checkpoint.load(a / "ckpt.pt"), checkpoint.load(b / "ckpt.pt")
    assert (ca["step"], ca["arch_steps"]) == (cb["step"], cb["arch_steps"])
    assert ca["arch"]["choices"] == cb["arch"]["choices"]
    for x, y in zip(ca["arch_probs"], cb["arch_probs"], strict=True):
        assert torch.equal(x, y)
    assert ca["model"].keys() == cb["model"].keys()
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    drop = ("time_s", "train_s", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in read_log(a)] == \
           [{k: v for k, v in r.items() if k not in drop} for r in read_log(b)]


def test_a_mid_epoch_stop_and_resume_end_exactly_where_an_uninterrupted_run_ends(folder, entries_for, tmp_path):
    entries = entries_for(32, CLASSES)
    search(small(folder, tmp_path / "full", ckpt_every=3), entries=entries)
    # stopped at step 6 of 8: two batches into the search epoch; its valid stream (one batch a pass) has
    # taken two batches, i.e. one whole pass and the first batch of the next
    part = small(folder, tmp_path / "part", stop_after_steps=6)
    first = search(part, entries=entries)
    saved = checkpoint.load(first["checkpoint"])
    assert first["stopped"] and (saved["epoch"], saved["batch"], saved["step"]) == (1, 2, 6)
    assert (saved["valid_position"]["passes"], saved["valid_position"]["consumed"]) == (1, 1)
    assert len(read_log(tmp_path / "part")) == 1
    resumed = search(small(folder, tmp_path / "part"), entries=entries, resume=first["checkpoint"])
    assert not resumed["stopped"] and resumed["step"] == 8
    assert_same_end(tmp_path / "full", tmp_path / "part")


def cli(folder: Path, table_file: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "search_client", "search", "--dataset", "imagefolder", "--data-dir", str(folder),
            "--resolution", "32", "--table-file", str(table_file), "--target-ms", "30",
            "--batch-size", "2", "--valid-size", "2", "--warmup-epochs", "1", "--epochs", "5",
            "--steps-per-epoch", "4", "--arch-every", "1", "--arch-skip-epochs", "0", "--arch-lr", "0.2",
            "--workers", "1", "--threads", "1", "--no-progress", "--no-onnx", "--out", str(out), *extra]


def test_sigterm_checkpoints_and_exits_0_and_the_resumed_run_matches(folder, table, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    table_file = table(tmp_path / "t.json", 32)
    full = subprocess.run(cli(folder, table_file, tmp_path / "full"), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    out = tmp_path / "part"
    proc = subprocess.Popen(cli(folder, table_file, out, "--ckpt-every", "5"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as a scheduler preempting the job
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopped at step" in stdout and not (out / "derived").exists()
    saved = checkpoint.load(out / "ckpt.pt")
    assert 0 < saved["step"] < 24
    again = subprocess.run(cli(folder, table_file, out, "--resume", str(out / "ckpt.pt")), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_end(tmp_path / "full", out)
    assert json.loads((out / "derived" / "arch.json").read_text()) == \
           json.loads((tmp_path / "full" / "derived" / "arch.json").read_text())


def test_official_recipe_sets_the_original_hyperparameters_and_records_them(folder, table, tmp_path, capsys):
    from search_client.engine.config import resolve

    cfg = resolve("official-imagenet", {"batch_size": 8})
    assert (cfg.resolution, cfg.warmup_epochs, cfg.epochs, cfg.lr, cfg.warmup_lr) == (224, 40, 120, 0.025, 0.05)
    assert (cfg.arch_every, cfg.grad_mode, cfg.loss, cfg.reg_alpha, cfg.reg_beta) == (5, "full_v2", "mul#log", 0.2, 0.3)
    assert (cfg.valid_size, cfg.label_smoothing, cfg.arch_lr, cfg.fill, cfg.batch_size) == (50_000, 0.1, 1e-3, 0.0, 8)
    assert SearchConfig().resolution == 32 and SearchConfig().grad_mode == "two"  # the defaults stay
    # a tiny run of it: every other value as the recipe has it (full_v2 gates, mul#log on ms)
    out = tmp_path / "recipe"
    code = main(["search", "--recipe", "official-imagenet", "--data-dir", str(folder), "--resolution", "32",
                 "--table-file", str(table(tmp_path / "t.json", 32)), "--target-ms", "30", "--batch-size", "2",
                 "--valid-size", "2", "--warmup-epochs", "0", "--epochs", "1", "--arch-skip-epochs", "0",
                 "--steps-per-epoch", "2", "--arch-every", "1", "--workers", "0", "--threads", "1",
                 "--no-progress", "--no-onnx", "--out", str(out)])
    assert code == 0
    assert "recipe: official-imagenet" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["grad_mode"] == "full_v2" and saved["config"]["loss"] == "mul#log"
    assert saved["config"]["lr"] == 0.025 and saved["config"]["mean"] == [0.485, 0.456, 0.406]
    assert saved["resolved"]["mul_log_unit_ms"] == 1.0  # the fake table's nets are all above 1 ms
    assert read_log(out)[0]["arch_steps"] == 2


@pytest.mark.parametrize(("args", "needle"), [
    (["--dataset", "digits", "--amp", "fp16"], "--amp fp16 needs a CUDA device"),
    (["--dataset", "imagefolder", "--data-dir", "EMPTY"], "no images under"),
    (["--dataset", "imagefolder", "--data-dir", "FILE"], "not a folder"),
    (["--dataset", "imagefolder", "--data-dir", "HOLE"], "class folder(s) with no images"),
    (["--dataset", "digits", "--workers", "-1"], "--workers must be"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, capsys):
    (tmp_path / "EMPTY" / "cats").mkdir(parents=True)
    (tmp_path / "FILE").write_text("x")
    write_folder(tmp_path / "HOLE", per_class=2)
    (tmp_path / "HOLE" / "zebra").mkdir()
    args = [str(tmp_path / a) if a in ("EMPTY", "FILE", "HOLE") else a for a in args]
    code = main(["search", *args, "--resolution", "16", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and needle in err[-1]


def test_more_workers_than_cpus_is_a_warning(tmp_path, capsys):
    code = main(["search", "--dataset", "digits", "--workers", "512", "--amp", "fp16", "--resolution", "16",
                 "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert "warning: --workers 512 is more than" in err and code == 2  # then fp16 stops it, before training


def test_two_gloo_processes_on_the_jpeg_folder_at_224_px(folder, table, tmp_path):
    from test_search_cli import TORCHRUN, free_port

    out = tmp_path / "ddp"
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "search_client", "search", "--dataset", "imagefolder", "--data-dir", str(folder),
           "--resolution", "224", "--table-file", str(table(tmp_path / "t.json", 224)), "--target-ms", "300",
           "--batch-size", "2", "--valid-size", "4", "--warmup-epochs", "0", "--epochs", "1",
           "--arch-skip-epochs", "0", "--steps-per-epoch", "2", "--arch-lr", "0.05", "--workers", "1",
           "--threads", "1", "--no-progress", "--no-onnx", "--dump-alphas", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the linear rule, printed once (rank 0 alone prints, logs and checkpoints)
    assert proc.stdout.count("search configuration:") == 1
    assert "global batch 2 x 2 = 4; lr 0.00625 x 2 = 0.0125" in proc.stdout
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert (resolved["world"], resolved["global_batch"], resolved["lr"]) == (2, 4, 0.0125)
    (line,) = read_log(out)
    assert line["arch_steps"] == 2 and line["lr"] <= 0.0125
    a0, a1 = torch.load(out / "rank0_alphas.pt"), torch.load(out / "rank1_alphas.pt")
    assert all(torch.equal(x, y) for x, y in zip(a0, a1, strict=True))
    assert max(float(x.abs().max()) for x in a0) > 0.01  # the architecture steps moved the logits
    assert json.loads((out / "derived" / "arch.json").read_text())["resolution"] == 224
