"""A caller for callfleet's fleet end-to-end tests, on LiveKit's own Python SDK.

Joins a room with a token, waits for the agent's first chat message (the greeting), then for
each line of --lines sends it on `lk.chat` and waits for the agent's reply. After --pause-after
lines it prints {"event": "paused"} and waits for "continue" on stdin (the test kills the agent's
worker meanwhile), then waits for the agent to speak again (the resumed agent) before going on.
Every chat received is printed as one JSON object per line on stdout.
"""

import argparse
import asyncio
import json
import sys
import time

from livekit import rtc


def emit(event, **fields):
    fields.update({"event": event, "t": time.time()})
    sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
    sys.stdout.flush()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--lines", required=True, help="caller lines separated by '|'")
    p.add_argument("--pause-after", type=int, default=-1)
    p.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args()

    room = rtc.Room()
    inbox = asyncio.Queue()

    async def on_text(reader, identity):
        text = await reader.read_all()
        emit("chat", identity=identity, text=text)
        await inbox.put((identity, text))

    room.register_text_stream_handler("lk.chat", lambda reader, identity: asyncio.ensure_future(on_text(reader, identity)))

    @room.on("data_received")
    def on_data(packet):
        if packet.topic == "lk.chat":
            who = packet.participant.identity if packet.participant else ""
            text = packet.data.decode("utf-8", "replace")
            emit("chat", identity=who, text=text, via="data")
            inbox.put_nowait((who, text))

    await room.connect(args.url, args.token)
    emit("joined", identity=room.local_participant.identity)

    async def next_message():
        return await asyncio.wait_for(inbox.get(), timeout=args.timeout)

    await next_message()  # the greeting
    lines = [l for l in args.lines.split("|") if l]
    for i, line in enumerate(lines):
        if i == args.pause_after:
            emit("paused")
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            await next_message()  # the resumed agent says it is back
        await room.local_participant.send_text(line, topic="lk.chat")
        emit("sent", text=line)
        await next_message()
    await asyncio.sleep(0.5)
    await room.disconnect()
    emit("done")


if __name__ == "__main__":
    asyncio.run(main())
