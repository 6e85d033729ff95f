//! The dispatcher: knows the live workers and their load, places each room that needs an agent on
//! one, re-places the calls of a worker that died, receives LiveKit webhooks, routes SIP calls
//! (called number → bot) and starts outbound calls.
//!
//! Architecture invariant: the dispatcher decides where a call runs; it never runs one. (It lands
//! with the fleet work, issue 5.)
