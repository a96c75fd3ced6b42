"""Writes that fail (a file-size limit stands in for a full disk: the same short writes, then EFBIG) are named
as failed writes, leave no half file where a whole one was, and leave logs of whole lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.files import append_line, read_json_lines, write_text_atomic

REPO = Path(__file__).resolve().parents[2]

LIMITED = """
import resource, signal, sys
from pathlib import Path
from shared.files import WriteFailed, append_line, write_text_atomic
folder = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
for write in (lambda: write_text_atomic(folder / "table.json", '{"big": "' + "x" * 10000 + '"}'),
              lambda: append_line(folder / "log.jsonl", '{"epoch": 1, "pad": "' + "x" * 10000 + '"}')):
    try:
        write()
    except WriteFailed as e:
        print(e)
"""


def test_a_failed_write_is_named_and_leaves_the_old_file_whole(tmp_path):
    write_text_atomic(tmp_path / "table.json", '{"old": true}')
    append_line(tmp_path / "log.jsonl", '{"epoch": 0}')
    proc = subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 2, proc.stdout + proc.stderr
    assert lines[0].startswith(f"could not write {tmp_path / 'table.json'}: File too large (")
    assert "MB free on its disk); nothing was replaced" in lines[0]
    assert lines[1].startswith(f"could not write {tmp_path / 'log.jsonl'}: File too large (")
    assert lines[1].endswith("the line was not appended")
    assert (tmp_path / "table.json").read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "table.json"]  # no temporary left
    assert read_json_lines(tmp_path / "log.jsonl") == [{"epoch": 0}]


def test_a_log_line_cut_short_is_no_record_and_a_damaged_one_is_named(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"epoch": 0}\n{"epoch": 1, "note": "cut sh')
    assert read_json_lines(log) == [{"epoch": 0}]
    log.write_text('{"epoch": 0}\n{"epoch": 1, "no\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match="log.jsonl line 2 is not a JSON record"):
        read_json_lines(log)
