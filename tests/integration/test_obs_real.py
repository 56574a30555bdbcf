"""Real OBS: finals through ObsOutput come back out of OBS's stream as CEA-608 captions.

Runs bench/obs_real.py (OBS under Xvfb streaming to a local nginx-rtmp, read back with
ffmpeg); skipped where OBS, Xvfb, nginx-rtmp or ffmpeg are not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("obs", "xvfb-run", "nginx", "ffmpeg")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


@pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS) or not RTMP_MODULE.exists(),
                    reason="needs obs-studio, xvfb, libnginx-mod-rtmp and ffmpeg")
def test_every_word_of_the_finals_comes_back_out_of_the_stream(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "obs_real.py"),
                          "--keep", str(tmp_path)], capture_output=True, text=True, timeout=240)
    result = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
    assert run.returncode == 0, (run.stderr[-2000:], result)
    assert result["obs"] and result["missing"] == []
    assert result["output"]["sent"] == 3 and result["output"]["failed"] == 0
