"""A voice caller for callfleet's fleet end-to-end tests, on LiveKit's own Python SDK.

Joins a room with a token and publishes a microphone track at once (silence until told to
speak). Follows the agent as LiveKit's own clients do: its audio (each stretch of sound is
reported when it starts and when it ends), its participant kind and `lk.agent.state` attribute,
the `lk.transcription` text streams (the caller's and the agent's speech) and `lk.chat`.

Commands on stdin, one per line:
  say PATH           speak the WAV at PATH, after the agent has been quiet for 600 ms (no barge-in)
  chat TEXT          send TEXT as an `lk.chat` text stream
  chat-legacy TEXT   send TEXT as a data packet on topic `lk.chat` (older clients)
  leave              disconnect and exit
Everything seen is printed as one JSON object per line on stdout:
  {"event": "joined" (identity, track) | "participant" (identity, kind, attributes)
   | "agent_state" (identity, state) | "transcription_chunk" (identity, text: a piece of a
   stream as it comes) | "transcription" (identity, text, attributes, once the stream is closed) | "transcript" (speaker user|bot, text: a final transcription)
   | "chat" (identity, text, via) | "audio_start" | "audio_end" | "said" | "done", "t": ..., ...}
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
            emit("track_subscribed", identity=participant.identity, track=publication.sid)
            listeners.append(asyncio.ensure_future(listen(track)))

    def participant(p):
        emit("participant", identity=p.identity, kind=rtc.ParticipantKind.Name(p.kind),
             attributes=dict(p.attributes))

    room.on("participant_connected", participant)

    @room.on("participant_attributes_changed")
    def on_attributes(changed, p):
        if "lk.agent.state" in changed:
            emit("agent_state", identity=p.identity, state=changed["lk.agent.state"])

    async def transcription(reader, identity):
        parts = []
        async for chunk in reader:
            parts.append(chunk)
            emit("transcription_chunk", identity=identity, text=chunk)
        text = "".join(parts)
        # Read once the stream is closed: the trailer's attributes are merged in by then.
        attributes = dict(reader.info.attributes or {})
        emit("transcription", identity=identity, text=text, attributes=attributes)
        if attributes.get("lk.transcription_final") == "true":
            mine = identity == room.local_participant.identity
            emit("transcript", speaker="user" if mine else "bot", text=text)

    async def chat(reader, identity):
        emit("chat", identity=identity, text=await reader.read_all(), via="stream")

    room.register_text_stream_handler(
        "lk.transcription", lambda reader, who: asyncio.ensure_future(transcription(reader, who)))
    room.register_text_stream_handler(
        "lk.chat", lambda reader, who: asyncio.ensure_future(chat(reader, who)))

    @room.on("data_received")
    def on_data(packet):
        if packet.topic == "lk.chat":
            who = packet.participant.identity if packet.participant else ""
            emit("chat", identity=who, text=packet.data.decode("utf-8", "replace"), via="packet")

    await room.connect(args.url, args.token)
    for p in room.remote_participants.values():
        participant(p)
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    publication = await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    emit("joined", identity=room.local_participant.identity, track=publication.sid)

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
        elif command.startswith("chat "):
            await room.local_participant.send_text(command[5:], topic="lk.chat")
        elif command.startswith("chat-legacy "):
            await room.local_participant.publish_data(command[12:], reliable=True, topic="lk.chat")
    stop.set()
    await mic
    for listener in listeners:
        listener.cancel()
    await room.disconnect()
    emit("done")


if __name__ == "__main__":
    asyncio.run(main())
