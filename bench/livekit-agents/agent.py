"""The LiveKit Agents side of scripts/bench-vs-livekit-agents: the same bot as the callfleet
side (bench/livekit-agents/callfleet-bot.yaml), written the way a LiveKit Agents user writes it.

Deepgram STT, an OpenAI-compatible LLM and Cartesia TTS through the official plugins, pointed at
the testkit's protocol-exact fakes by their base-URL options (the harness sets BENCH_*_URL), and
Silero VAD. Turn-taking is set to callfleet's defaults where an option maps one to one (see
TURN below and docs/PERFORMANCE.md). Run as `python agent.py start` (production mode); it
registers under BENCH_AGENT_NAME and is dispatched explicitly: each caller's token carries
roomConfig.agents with that name (automatic dispatch would also send it into every other room on
the server).
"""

import math
import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.plugins import cartesia, deepgram, openai, silero

# The same words as the callfleet bot (callfleet-bot.yaml): greeting and system prompt.
GREETING = "Hello, thanks for calling. How can I help you today?"
INSTRUCTIONS = (
    "You are the front desk of a bench clinic. Answer the caller in one short spoken sentence."
)

# callfleet's TurnConfig defaults (crates/pipeline/src/turn.rs) and its Deepgram query
# (crates/providers/src/deepgram.rs), as far as LiveKit Agents has the same knob.
TURN = {
    # Deepgram decides the endpoint (endpointing=300 ms), then at least min_delay of silence;
    # without one, the turn ends after max_delay.
    "turn_detection": "stt",
    "endpointing": {"mode": "fixed", "min_delay": 0.1, "max_delay": 2.5},
    # callfleet: min_interruption_speech 500 ms, words 0, false_interruption_timeout 1.5 s
    # (it resumes), interruption judged by the VAD (no adaptive model).
    "interruption": {
        "enabled": True,
        "mode": "vad",
        "min_duration": 0.5,
        "min_words": 0,
        "resume_false_interruption": True,
        "false_interruption_timeout": 1.5,
    },
    # callfleet does not start replies before the turn ends.
    "preemptive_generation": {"enabled": False},
}


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"agent.py: {name} is not set (scripts/bench-vs-livekit-agents sets it)")
    return value


def prewarm(proc: JobProcess) -> None:
    # callfleet's Silero settings: threshold 0.5, onset 40 ms, hangover 200 ms.
    proc.userdata["vad"] = silero.VAD.load(
        min_speech_duration=0.04, min_silence_duration=0.2, activation_threshold=0.5
    )


def _no_load() -> float:
    return 0.0


# The harness measures what one worker sustains, as it does for callfleet (whose worker capacity
# it sets high). LiveKit Agents' defaults would shed calls instead: its load is the whole
# machine's CPU (the callers and livekit-server share this machine), and livekit-server offers no
# job to a worker whose load is near 1, nor does the worker accept above 0.7 in production mode.
# BENCH_LK_DEFAULT_LOAD=1 keeps those defaults.
_default_load = os.environ.get("BENCH_LK_DEFAULT_LOAD") == "1"
server = AgentServer(
    setup_fnc=prewarm,
    **({} if _default_load else {"load_fnc": _no_load, "load_threshold": math.inf}),
    num_idle_processes=int(os.environ.get("BENCH_IDLE_PROCESSES", str(min(os.cpu_count() or 1, 4)))),
    # A healthcheck HTTP port of its own (0: any free one), so two workers can run side by side.
    port=0,
)


@server.rtc_session(agent_name=env("BENCH_AGENT_NAME"))
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session = AgentSession(
        stt=deepgram.STT(
            base_url=env("BENCH_DEEPGRAM_URL") + "/v1/listen",
            api_key=env("BENCH_KEY"),
            model="nova-3",
            language="en",
            endpointing_ms=300,
            utterance_end_ms=1000,
            interim_results=True,
            vad_events=True,
            smart_format=True,
        ),
        llm=openai.LLM(
            base_url=env("BENCH_OPENAI_URL"), api_key=env("BENCH_KEY"), model="bench-model"
        ),
        tts=cartesia.TTS(
            base_url=env("BENCH_CARTESIA_URL"),
            api_key=env("BENCH_KEY"),
            model="sonic-2",
            voice="bench-voice",
            sample_rate=16000,  # callfleet asks Cartesia for 16 kHz too
        ),
        vad=ctx.proc.userdata["vad"],
        turn_handling=TURN,
    )
    await session.start(room=ctx.room, agent=Agent(instructions=INSTRUCTIONS))
    session.say(GREETING)


if __name__ == "__main__":
    cli.run_app(server)
