//! The event catalogue: every kind of event cairn writes to its ledger, declared once,
//! with its past versions and the upcasters that read them.
//!
//! The ledger itself only reserves kinds below 0x0100 for its own use (genesis, key
//! rotation, payload erasure). The kinds of the layers above are declared here as they
//! are built; this crate sits below both the write side (`commands`) and the read side
//! (`projections`) so neither can invent a kind the other does not know.
