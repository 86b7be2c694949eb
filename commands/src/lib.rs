//! The write side: commands, their validation against current state, the events they
//! emit, and the sequencer that appends them to the ledger.
//!
//! Rules are pure functions — `decide(&State, Command, &Env) -> Result<Vec<Event>,
//! Rejection>` — with time, ids and randomness injected; only the sequencer does I/O.
//! They arrive with the server (issue "The server").
