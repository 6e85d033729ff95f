"""Reference participant for callfleet-rtc's end-to-end tests: LiveKit's own Python SDK.

Joins one or more rooms (one participant each, all in this process), optionally publishes a WAV
file as a microphone track, records every remote audio track to WAV, sends and logs chat, and
prints one JSON object per line on stdout for everything it sees:
  {"room": R, "event": "joined" | "participant_joined" | "participant_left" | "track_subscribed"
   | "chat" | "transcription" | "published" | "publish_failed" | "publish_start" | "publish_done" | "recorded"
   | "done", ...}
The Rust test reads these lines and the recorded WAVs; all analysis happens on the Rust side.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import wave

import numpy as np
from livekit import api, rtc


def emit(room, event, **fields):
    fields.update({"room": room, "event": event, "t": time.time()})
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def token(args, room, identity):
    return (
        api.AccessToken(args.api_key, args.api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True, can_update_own_metadata=True))
        .to_jwt()
    )


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2, "16-bit WAV expected"
        rate = w.getframerate()
        ch = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    if ch > 1:
        data = data.reshape(-1, ch)[:, 0].copy()
    return rate, data


def write_wav(path, rate, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype=np.int16).tobytes())


async def run_peer(args, index, turns):
    room_name = f"{args.room}{index}" if args.rooms > 1 else args.room
    identity = args.identity
    room = rtc.Room()
    others = asyncio.Event()
    chat_seen = asyncio.Event()
    subscribed = asyncio.Event()
    recorders = []

    @room.on("participant_connected")
    def _joined(p):
        emit(room_name, "participant_joined", identity=p.identity, attributes=dict(p.attributes), kind=rtc.ParticipantKind.Name(p.kind))
        others.set()

    @room.on("participant_disconnected")
    def _left(p):
        emit(room_name, "participant_left", identity=p.identity)

    @room.on("participant_attributes_changed")
    def _attrs(changed, p):
        emit(room_name, "attributes_changed", identity=p.identity, attributes=dict(p.attributes))

    @room.on("track_subscribed")
    def _subscribed(track, publication, participant):
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        emit(room_name, "track_subscribed", identity=participant.identity, track=publication.sid)
        subscribed.set()
        recorders.append(asyncio.ensure_future(record(args, room_name, track, participant.identity, len(recorders))))

    @room.on("data_received")
    def _data(packet):
        if packet.topic == "lk.chat":
            who = packet.participant.identity if packet.participant else ""
            emit(room_name, "chat", identity=who, text=packet.data.decode("utf-8", "replace"), via="data")
            chat_seen.set()

    async def on_text(reader, identity_):
        text = await reader.read_all()
        emit(room_name, "chat", identity=identity_, text=text, via="stream")
        chat_seen.set()

    room.register_text_stream_handler("lk.chat", lambda reader, who: asyncio.ensure_future(on_text(reader, who)))

    async def on_transcription(reader, identity_):
        text = await reader.read_all()
        # Read once the stream is closed: the trailer's attributes are merged in by then.
        emit(room_name, "transcription", identity=identity_, text=text, id=reader.info.stream_id,
             attributes=dict(reader.info.attributes or {}))

    room.register_text_stream_handler(
        "lk.transcription", lambda reader, who: asyncio.ensure_future(on_transcription(reader, who)))

    if args.one_by_one and index > 0:
        # Wait until the previous room has published. Joining every room at once makes this
        # process's libwebrtc trickle hundreds of ICE candidates per room in one burst; the
        # server drops a participant's signalling when more than 200 requests queue up
        # ("signal stream closed ... channel is full") and that room's track never arrives.
        await turns[index - 1].wait()
    await room.connect(args.url, token(args, room_name, identity), rtc.RoomOptions(auto_subscribe=True))
    emit(room_name, "joined", identity=identity, others=[p.identity for p in room.remote_participants.values()])
    if room.remote_participants:
        others.set()
    if args.wait_participant:
        await asyncio.wait_for(others.wait(), timeout=args.duration)

    tasks = []
    if args.publish_wav:
        tasks.append(asyncio.ensure_future(publish(args, room_name, room, subscribed, turns, index)))
    else:
        turns[index].set()
    if args.set_attributes:
        await room.local_participant.set_attributes(json.loads(args.set_attributes))
        emit(room_name, "attributes_set")
    if args.send_dtmf:
        code, digit = args.send_dtmf.split(":")
        await room.local_participant.publish_dtmf(code=int(code), digit=digit)
        emit(room_name, "dtmf_sent")
    if args.send_chat:
        await asyncio.sleep(args.chat_delay)
        await room.local_participant.send_text(args.send_chat, topic="lk.chat")
        emit(room_name, "chat_sent", text=args.send_chat)

    deadline = time.time() + args.duration
    if args.leave_after is not None:
        deadline = time.time() + args.leave_after
    while time.time() < deadline:
        if args.exit_on_chat and chat_seen.is_set():
            break
        if (args.exit_when_done and all(t.done() for t in tasks) and recorders
                and all(r.done() for r in recorders) and not room.remote_participants):
            break
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    for r in recorders:
        r.cancel()
    await asyncio.gather(*recorders, return_exceptions=True)
    await room.disconnect()
    emit(room_name, "done")


async def publish(args, room_name, room, subscribed, turns, index):
    rate, data = read_wav(args.publish_wav)
    source = rtc.AudioSource(rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    try:
        pub = await room.local_participant.publish_track(track, opts)
    except Exception as e:
        # A task's exception is otherwise lost: say so, so the test names the room and why.
        emit(room_name, "publish_failed", error=repr(e))
        turns[index].set()
        raise
    emit(room_name, "published", track=pub.sid, sample_rate=rate, samples=len(data))
    turns[index].set()
    if args.start_after_subscribed:
        # The other side publishes once it hears us: then it is listening, however long
        # that took, and no speech is lost to a slow subscription. Every room has joined
        # by then too, so joining (costly for libwebrtc) does not starve the speech.
        await subscribed.wait()
        await asyncio.gather(*(t.wait() for t in turns))
        emit(room_name, "publish_start")
    await asyncio.sleep(args.publish_delay)
    # 100 ms per capture: fewer wake-ups, so one process can feed many rooms in real time.
    chunk = rate // 10
    for repeat in range(args.publish_repeat):
        start = time.time()
        for i in range(0, len(data) - chunk + 1, chunk):
            frame = rtc.AudioFrame(data[i : i + chunk].tobytes(), rate, 1, chunk)
            await source.capture_frame(frame)
        emit(room_name, "publish_done", repeat=repeat, seconds=time.time() - start)
    # Trailing silence so the jitter buffer drains the tail.
    silence = np.zeros(chunk, dtype=np.int16).tobytes()
    for _ in range(5):
        await source.capture_frame(rtc.AudioFrame(silence, rate, 1, chunk))
    await source.wait_for_playout()


async def record(args, room_name, track, who, n):
    if not args.record_dir:
        return
    stream = rtc.AudioStream(track, sample_rate=48000, num_channels=1, frame_size_ms=100)
    path = os.path.join(args.record_dir, f"{room_name}_{n}.wav")
    samples = []
    first = None
    try:
        async for ev in stream:
            if first is None:
                first = time.time()
            samples.append(np.frombuffer(ev.frame.data, dtype=np.int16).copy())
            if args.record_seconds and sum(len(s) for s in samples) >= args.record_seconds * 48000:
                break
    except asyncio.CancelledError:
        pass
    finally:
        await stream.aclose()
        data = np.concatenate(samples) if samples else np.zeros(0, dtype=np.int16)
        write_wav(path, 48000, data)
        emit(room_name, "recorded", identity=who, path=path, samples=int(len(data)), first_frame=first)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default=os.environ.get("CALLFLEET_LIVEKIT_URL", "ws://127.0.0.1:7880"))
    p.add_argument("--api-key", default=os.environ.get("CALLFLEET_LIVEKIT_API_KEY", "devkey"))
    p.add_argument("--api-secret", default=os.environ.get("CALLFLEET_LIVEKIT_API_SECRET", "secret"))
    p.add_argument("--room", required=True, help="room name (a prefix when --rooms > 1)")
    p.add_argument("--rooms", type=int, default=1)
    p.add_argument("--identity", default="py")
    p.add_argument("--wait-participant", action="store_true")
    p.add_argument("--publish-wav")
    p.add_argument("--publish-delay", type=float, default=0.5)
    p.add_argument("--publish-repeat", type=int, default=1)
    p.add_argument("--start-after-subscribed", action="store_true",
                   help="start the WAV only once a remote audio track is subscribed")
    p.add_argument("--exit-when-done", action="store_true",
                   help="leave once publishing and recording are done and everyone else has left "
                   "(--duration is then a limit)")
    p.add_argument("--record-dir")
    p.add_argument("--record-seconds", type=float, default=0)
    p.add_argument("--send-chat")
    p.add_argument("--send-dtmf", help="CODE:DIGIT, e.g. 5:5")
    p.add_argument("--set-attributes", help="JSON object of attributes to set after joining")
    p.add_argument("--chat-delay", type=float, default=0.5)
    p.add_argument("--exit-on-chat", action="store_true")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--leave-after", type=float)
    p.add_argument("--one-by-one", action="store_true",
                   help="with --rooms: join each room once the previous one has published")
    args = p.parse_args()
    turns = [asyncio.Event() for _ in range(args.rooms)]
    await asyncio.gather(*(run_peer(args, i, turns) for i in range(args.rooms)))


if __name__ == "__main__":
    asyncio.run(main())
