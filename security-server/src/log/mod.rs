//! The security server's side of the message log (DESIGN §6). The log itself (storage, Merkle
//! tree, evidence bundles) is the `msglog` crate; here is what the server puts in it and when.
//!
//! - [`logger`]: what goes into a record and when it is written: before a message is passed on;
//!   a failed write fails the exchange ([`MessageLogger`]).
//! - [`checkpointer`]: the periodic signed checkpoint and its cosigning by peer witnesses.
//! - [`mod@witness`]: cosigning peers' checkpoints.
//! - [`evidence`]: selecting records for an evidence export.
//! - [`replay`]: the server proxy's replay window, rebuilt from the log at start.

pub mod checkpointer;
pub mod evidence;
pub mod logger;
pub mod replay;
pub mod witness;

pub use checkpointer::{Checkpointer, Round, choose_witnesses};
pub use evidence::{EvidenceQuery, ExportError, export_evidence};
pub use logger::{Durable, Failed, Logged, MessageLogger, Queued, open};
pub use witness::witness;
