"""Drives the talk page in headless Chromium over the DevTools protocol (no extra packages: the
LiveKit SDK's venv already has aiohttp). Chromium gets a fake microphone fed from a WAV file.

Opens --url, waits until the page's transcript contains --expect, then for each --say/--expect
pair types the text into the page and waits for the expected reply. Prints the transcript as JSON
on the last line; exits 1 if something expected never shows.
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse

import aiohttp


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--chromium", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--wav", required=True, help="fake microphone input")
    p.add_argument("--expect", required=True, help="text the transcript must show first")
    p.add_argument("--say", action="append", default=[])
    p.add_argument("--then", action="append", default=[], help="what must follow each --say")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()

    profile = tempfile.mkdtemp(prefix="callfleet-chromium-")
    chrome = subprocess.Popen(
        [
            args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={args.wav}", "--autoplay-policy=no-user-gesture-required",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = None
        for line in chrome.stderr:
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            print("chromium did not start its DevTools endpoint", file=sys.stderr)
            return 1
        async with aiohttp.ClientSession() as http:
            async with http.put(f"http://127.0.0.1:{port}/json/new?{urllib.parse.quote(args.url, safe='')}") as r:
                target = await r.json(content_type=None)
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                next_id = 0

                async def evaluate(expression):
                    nonlocal next_id
                    next_id += 1
                    await ws.send_json({"id": next_id, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": True}})
                    while True:
                        msg = await ws.receive_json()
                        if msg.get("id") == next_id:
                            return msg.get("result", {}).get("result", {}).get("value")

                async def transcript():
                    return await evaluate("document.getElementById('transcript') ? document.getElementById('transcript').innerText : ''") or ""

                async def wait_for(text):
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + args.timeout
                    while loop.time() < deadline:
                        if text in await transcript():
                            return True
                        await asyncio.sleep(0.25)
                    return False

                ok = await wait_for(args.expect)
                for say, then in zip(args.say, args.then):
                    if not ok:
                        break
                    await evaluate(
                        "(() => { const t = document.getElementById('text'); t.value = " + json.dumps(say)
                        + "; document.getElementById('say').requestSubmit(); })()"
                    )
                    ok = await wait_for(then)
                status = await evaluate("document.body.dataset.status || ''")
                mic = await evaluate("room ? room.localParticipant.isMicrophoneEnabled : false")
                print(json.dumps({"ok": ok, "status": status, "microphone": mic, "transcript": await transcript()}, ensure_ascii=False))
                return 0 if ok else 1
    finally:
        chrome.kill()
        chrome.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
