"""The same measurement as rtc_streams.rs, with LiveKit's Python SDK as the measured side.

Run by `rtc_streams --python` (scripts/bench-rtc --python), which starts the far ends (Rust
participants in a child process) and then this script:
    python py_streams.py --n N --prefix PREFIX --secs S
N rooms, one participant each: publishes a 48 kHz tone in 20 ms frames and consumes the far
end's audio. Prints one line in the Rust bench's format (CPU of this process, all threads,
including the SDK's native ones; RSS growth since before joining).
"""

import argparse
import asyncio
import os
import time

import numpy as np
from livekit import api, rtc


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--secs", type=float, default=10)
    p.add_argument("--url", default=os.environ.get("CALLFLEET_LIVEKIT_URL", "ws://127.0.0.1:7880"))
    p.add_argument("--api-key", default=os.environ.get("CALLFLEET_LIVEKIT_API_KEY", "devkey"))
    p.add_argument("--api-secret", default=os.environ.get("CALLFLEET_LIVEKIT_API_SECRET", "secret"))
    a = p.parse_args()

    rss0 = rss_bytes()
    received = [0]
    rooms, sources, consumers = [], [], []

    async def consume(track):
        async for _ in rtc.AudioStream(track, sample_rate=48000, num_channels=1, frame_size_ms=20):
            received[0] += 1

    for i in range(a.n):
        room = rtc.Room()

        @room.on("track_subscribed")
        def _sub(track, pub, participant):
            if track.kind == rtc.TrackKind.KIND_AUDIO:
                consumers.append(asyncio.ensure_future(consume(track)))

        token = (
            api.AccessToken(a.api_key, a.api_secret)
            .with_identity("measured-py")
            .with_grants(api.VideoGrants(room_join=True, room=f"{a.prefix}{i}"))
            .to_jwt()
        )
        await room.connect(a.url, token)
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        rooms.append(room)
        sources.append(source)

    t = np.arange(960) / 48000.0
    phase = [0]

    async def feed():
        next_t = time.monotonic()
        while True:
            samples = (np.sin(2 * np.pi * 440 * (t + phase[0] * 0.02)) * 8000).astype(np.int16).tobytes()
            phase[0] += 1
            frame = rtc.AudioFrame(samples, 48000, 1, 960)
            await asyncio.gather(*(s.capture_frame(frame) for s in sources))
            next_t += 0.02
            await asyncio.sleep(max(0, next_t - time.monotonic()))

    feeder = asyncio.ensure_future(feed())
    await asyncio.sleep(3)
    c0, f0, w0 = os.times(), received[0], time.monotonic()
    await asyncio.sleep(a.secs)
    c1, f1, w1 = os.times(), received[0], time.monotonic()
    rss1 = rss_bytes()
    wall = w1 - w0
    cpu = ((c1.user - c0.user) + (c1.system - c0.system)) / wall * 100
    n = a.n
    print(
        f"python streams={n:>3}  cpu={cpu:6.1f}% of a core  cpu/stream={cpu / n:5.2f}%  "
        f"rss+={(rss1 - rss0) / 1048576:6.1f} MiB  rss/stream={(rss1 - rss0) / 1024 / n:6.0f} KiB  "
        f"rx frames/s/stream={(f1 - f0) / wall / n:5.1f}",
        flush=True,
    )
    feeder.cancel()
    for c in consumers:
        c.cancel()
    for r in rooms:
        await r.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
