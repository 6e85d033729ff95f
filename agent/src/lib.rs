//! The agent worker: takes jobs from the fleet, joins the job's LiveKit room as a participant and
//! runs a call session (room audio → VAD/turns → STT → scenario engine/LLM/knowledge → TTS → room
//! audio), checkpointing after each turn and handing the finished call to post-call processing.
//!
//! Architecture invariant: a worker never writes to the database; everything it produces leaves
//! through the fleet's queues. (The worker itself lands with the fleet work, issue 5.)
