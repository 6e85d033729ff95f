"""A voice caller for callfleet's fleet end-to-end tests, on LiveKit's own Python SDK.

Joins a room with a token and publishes a microphone track at once (silence until told to
speak). Listens to the agent two ways: its audio (each stretch of sound is reported when it
starts and when it ends) and the live transcript on the `callfleet.transcript` data topic.

Commands on stdin, one per line:
  say PATH   speak the WAV at PATH, after the agent has been quiet for 600 ms (no barge-in)
  leave      disconnect and exit
Everything seen is printed as one JSON object per line on stdout:
  {"event": "joined" | "audio_start" | "audio_end" | "transcript" | "said" | "done", "t": ..., ...}
"""

import argparse
import asyncio
import json
import sys
import time
import wave

import numpy as np
from livekit import rtc

RATE = 48000
CHUNK = RATE // 50  # 20 ms


def emit(event, **fields):
    fields.update({"event": event, "t": time.time()})
    sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def read_wav(path):
    with wave.open(path, "rb") as w:
        rate, ch = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)
    if ch > 1:
        data = data.reshape(-1, ch)[:, 0]
    if rate != RATE:
        positions = np.arange(0, len(data) - 1, rate / RATE)
        data = np.interp(positions, np.arange(len(data)), data)
    return data.astype(np.int16)


class Ears:
    """Follows the agent's audio: a stretch of sound starts after 300 ms of quiet."""

    def __init__(self):
        self.loud = False
        self.quiet_ms = 10_000
        self.loud_ms = 0

    def hear(self, frame, ms):
        rms = float(np.sqrt(np.mean(np.square(frame.astype(np.float32))))) if len(frame) else 0.0
        if rms > 500:
            self.loud_ms += ms
            if not self.loud and self.loud_ms >= 60:
                self.loud = True
                emit("audio_start")
            self.quiet_ms = 0
        else:
            self.loud_ms = 0
            self.quiet_ms += ms
            if self.loud and self.quiet_ms >= 300:
                self.loud = False
                emit("audio_end")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    args = p.parse_args()

    room = rtc.Room()
    ears = Ears()
    listeners = []

    async def listen(track):
        async for event in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            frame = np.frombuffer(event.frame.data, dtype=np.int16)
            ears.hear(frame, int(1000 * len(frame) / RATE))

    @room.on("track_subscribed")
    def on_track(track, publication, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            emit("track_subscribed", identity=participant.identity)
            listeners.append(asyncio.ensure_future(listen(track)))

    @room.on("data_received")
    def on_data(packet):
        if packet.topic == "callfleet.transcript":
            turn = json.loads(packet.data.decode("utf-8", "replace"))
            emit("transcript", speaker=turn.get("speaker"), text=turn.get("text"), interrupted=turn.get("interrupted"))

    await room.connect(args.url, args.token)
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    emit("joined", identity=room.local_participant.identity)

    pending = asyncio.Queue()
    stop = asyncio.Event()

    async def microphone():
        silence = np.zeros(CHUNK, dtype=np.int16)
        speech, offset = None, 0
        next_at = time.monotonic()
        while not stop.is_set():
            if speech is None and not pending.empty() and not ears.loud and ears.quiet_ms >= 600:
                speech, offset = pending.get_nowait(), 0
            if speech is not None:
                chunk = speech[offset:offset + CHUNK]
                offset += CHUNK
                if len(chunk) < CHUNK:
                    chunk = np.concatenate([chunk, silence[: CHUNK - len(chunk)]])
                    speech = None
                    emit("said")
            else:
                chunk = silence
            await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, CHUNK))
            next_at += CHUNK / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    mic = asyncio.ensure_future(microphone())
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if not line or command == "leave":
            break
        if command.startswith("say "):
            await pending.put(read_wav(command[4:]))
    stop.set()
    await mic
    for listener in listeners:
        listener.cancel()
    await room.disconnect()
    emit("done")


if __name__ == "__main__":
    asyncio.run(main())
