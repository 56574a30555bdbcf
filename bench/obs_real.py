"""Real OBS end to end: captions through ObsOutput into OBS's stream, read back as CEA-608.

Starts a local nginx-rtmp, OBS under Xvfb with obs-websocket on (a throwaway HOME) streaming
to it, sends finals through `ObsOutput`, and reads the stream's 608 captions back with ffmpeg
(`lavfi movie=...[out0+subcc]`). Needs `apt-get install obs-studio xvfb xauth
libnginx-mod-rtmp ffmpeg`. Prints one JSON line; exit status 0 when every word came back.

    python bench/obs_real.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captioncast.outputs.obs import ObsCaptions, ObsOutput

PASSWORD = "bench-password-1234"
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
FINALS = [
    "Going along slushy country roads and speaking to damp audiences.",
    "In draughty schoolrooms day after day for a fortnight.",
    "He will have to put in an appearance at some place of worship.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(root: Path, port: int) -> subprocess.Popen[bytes]:
    conf = root / "nginx.conf"
    conf.write_text(f"""load_module {RTMP_MODULE};
daemon off; pid {root}/nginx.pid; error_log {root}/nginx.err info;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}
""")
    return subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def obs_home(root: Path, ws_port: int, rtmp_port: int) -> Path:
    home = root / "home"
    cfg = home / ".config" / "obs-studio"
    profile = cfg / "basic" / "profiles" / "Bench"
    profile.mkdir(parents=True)
    (cfg / "basic" / "scenes").mkdir(parents=True)
    # OBS 29 (obs-websocket 5.1) keeps its settings in global.ini; OBS 30+ (5.3+) reads
    # plugin_config/obs-websocket/config.json: write both.
    (cfg / "global.ini").write_text(f"""[General]
FirstRun=true
Pre19Defaults=false
Pre21Defaults=false
Pre23Defaults=false
Pre24.1Defaults=false
[Basic]
Profile=Bench
ProfileDir=Bench
SceneCollection=Bench
SceneCollectionFile=Bench
[OBSWebSocket]
FirstLoad=false
ServerEnabled=true
ServerPort={ws_port}
AlertsEnabled=false
AuthRequired=true
ServerPassword={PASSWORD}
""")
    ws_json = cfg / "plugin_config" / "obs-websocket"
    ws_json.mkdir(parents=True)
    (ws_json / "config.json").write_text(json.dumps({
        "first_load": False, "server_enabled": True, "server_port": ws_port,
        "alerts_enabled": False, "auth_required": True, "server_password": PASSWORD}))
    # veryfast, not ultrafast: libobs puts a caption only on a packet of NAL priority 1 or
    # less (a non-reference B-frame), and ultrafast encodes no B-frames, so no captions.
    # keyint=30: a new RTMP reader starts at a keyframe; x264's default 250 loses ~10 s.
    (profile / "basic.ini").write_text("""[General]
Name=Bench
[Video]
BaseCX=640
BaseCY=360
OutputCX=640
OutputCY=360
FPSType=1
FPSInt=30
[Output]
Mode=Simple
[SimpleOutput]
VBitrate=800
StreamEncoder=x264
Preset=veryfast
x264Settings=keyint=30
""")
    (profile / "service.json").write_text(json.dumps({
        "type": "rtmp_custom",
        "settings": {"server": f"rtmp://127.0.0.1:{rtmp_port}/live", "key": "bench"}}))
    return home


async def wait_streaming(captions: ObsCaptions, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            status = await captions.request("GetStreamStatus")
            if status.get("outputActive"):
                return
            await captions.request("StartStream")
        except Exception as e:
            last = e
        await asyncio.sleep(1.0)
    raise TimeoutError(f"OBS did not start streaming: {last}")


NAL_START = re.compile(b"\x00\x00\x00\x01|(?<!\x00)\x00\x00\x01")


def sei_before_slices(annexb: bytes) -> bytes:
    """OBS 29 appends its caption SEI after the frame's slice (libobs' own TODO says so);
    ffmpeg's decoder only exports an SEI that comes before the slice, so move each caption
    SEI in front of the slice it follows. The bytes are OBS's; only their order changes."""
    starts = [m.start() for m in NAL_START.finditer(annexb)]
    nals = [annexb[a:b] for a, b in zip(starts, [*starts[1:], len(annexb)])]
    out: list[bytes] = []
    last_slice: int | None = None
    for nal in nals:
        kind = nal[nal.index(b"\x00\x00\x01") + 3] & 0x1F
        if kind in (1, 5):
            last_slice = len(out)
        if kind == 6 and b"GA94" in nal and last_slice is not None:
            out.insert(last_slice, nal)
            last_slice += 1
            continue
        out.append(nal)
    return b"".join(out)


def read_608(root: Path, flv: Path) -> str:
    """The 608 captions of a recorded stream, as text, through ffmpeg's lavfi `subcc`."""
    def ffmpeg(*args: str) -> None:
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
                       check=True, timeout=120)

    raw, fixed, srt = root / "video.h264", root / "fixed.mp4", root / "captions.srt"
    ffmpeg("-i", str(flv), "-map", "0:v", "-c", "copy", "-bsf:v", "h264_mp4toannexb", str(raw))
    raw.write_bytes(sei_before_slices(raw.read_bytes()))
    ffmpeg("-fflags", "+genpts", "-r", "30", "-i", str(raw), "-c", "copy", str(fixed))
    ffmpeg("-f", "lavfi", "-i", f"movie={fixed}[out0+subcc]", "-map", "0:1", str(srt))
    return read_srt(srt.read_text(errors="replace"))


def read_srt(text: str) -> str:
    lines = [re.sub(r"<[^>]*>|\{[^}]*\}", "", ln) for ln in text.splitlines()
             if ln.strip() and not ln.strip().isdigit() and "-->" not in ln]
    return " ".join(lines)


async def run(root: Path) -> dict[str, object]:
    ws_port, rtmp_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = [start_nginx(root, rtmp_port)]
    env = {**os.environ, "HOME": str(obs_home(root, ws_port, rtmp_port)),
           "LIBGL_ALWAYS_SOFTWARE": "1"}
    obs_log = open(root / "obs.log", "wb")  # noqa: SIM115 - lives as long as OBS
    procs.append(subprocess.Popen(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x720x24", "obs", "--disable-updater",
         "--disable-shutdown-check", "--multi", "--startstreaming"],
        env=env, stdout=obs_log, stderr=subprocess.STDOUT, start_new_session=True))
    result: dict[str, object] = {"ws_port": ws_port, "rtmp_port": rtmp_port}
    try:
        url = f"ws://127.0.0.1:{ws_port}"
        async with ObsCaptions(url, PASSWORD) as captions:
            deadline = time.monotonic() + 60
            while True:
                try:
                    version = await captions.request("GetVersion")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1.0)
            result["obs"] = version.get("obsVersion")
            await wait_streaming(captions, 60)
        # Record the stream first, then read its 608 track from the file: probing a live RTMP
        # stream inside lavfi's movie source does not always find the video in time.
        flv = root / "stream.flv"
        reader = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-analyzeduration", "10M",
             "-probesize", "20M", "-i",
             f"rtmp://127.0.0.1:{rtmp_port}/live/bench", "-c", "copy", "-t", "40", str(flv)],
            stdout=subprocess.DEVNULL, stderr=open(root / "ffmpeg.log", "wb"))  # noqa: SIM115
        procs.append(reader)
        deadline = time.monotonic() + 30
        while not (flv.exists() and flv.stat().st_size > 100_000):  # video is arriving
            if time.monotonic() > deadline:
                raise TimeoutError("no video recorded from nginx-rtmp")
            await asyncio.sleep(0.5)
        output = ObsOutput(url, PASSWORD, min_gap_s=1.5)
        t = 0.0
        for i, text in enumerate(FINALS):
            words = text.split()
            output.offer({"type": "final", "seq": i + 1, "utterance": i, "text": text,
                          "start": t, "end": t + 0.4 * len(words), "language": "en",
                          "words": [{"word": w, "start": t + 0.4 * k, "end": t + 0.4 * k + 0.3}
                                    for k, w in enumerate(words)]})
            t += 0.4 * len(words)
        await output.close(timeout=30)
        result["output"] = output.status()
        await asyncio.to_thread(reader.wait, 60)
        got = read_608(root, flv)
        result["captions"] = got
        want = {w.strip(".,").upper() for f in FINALS for w in f.split()}
        seen = {w.strip(".,").upper() for w in re.split(r"\s+", got) if w}
        result["missing"] = sorted(want - seen)
        result["ok"] = not result["missing"]
    finally:
        for p in reversed(procs):
            try:
                if p.args[0] == "xvfb-run":  # its session holds Xvfb and OBS
                    os.killpg(p.pid, signal.SIGTERM)
                else:
                    p.terminate()
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                p.kill()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, SRT)")
    args = ap.parse_args()
    for tool in ("obs", "xvfb-run", "nginx", "ffmpeg"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    root = args.keep or Path(tempfile.mkdtemp(prefix="obs-real-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(run(root))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
