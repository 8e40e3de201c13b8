//! The tables of `messagelog.redb` (listed in `docs/evidence.md` too) and the small helpers every
//! module uses to read them.
//!
//! | table | key | value |
//! |---|---|---|
//! | `records` | leaf index | where the record's entry lies in the write-ahead log (`wal::EntryLocation`, format byte 0), or (written by earlier versions) the `LogRecord` bytes (deleted once archived) |
//! | `bodies` | leaf index | written only by earlier versions: where the stored body lies in the write-ahead log (`wal::BodyLocation`, format byte 3), or the format byte ‖ body, plain or sealed ([`crate::crypto`]) (deleted once archived) |
//! | `merkle_nodes` | (level, index) | SHA-256 of the complete subtree, for the levels [`stores_level`] names (logs of format 1 hold every level); never deleted |
//! | `index_message_id` | (X-Road-Id, leaf index) | () |
//! | `index_logged_at` | (logged_at ms, leaf index) | () |
//! | `index_subject` | (HMAC-SHA256(subject key, subject), leaf index) | () |
//! | `meta` | name | `format` (1 byte), `salt` (32), `body_key_check` (32), `open_epoch` (u32 BE), `checkpoints_thinned_below` (u64 BE), `wal_applied` (`wal::Position`) |
//! | `checkpoints` | tree size | checkpoint note text, with the cosignatures collected so far |
//! | `witness_state` | origin (peer server id) | size (u64 BE) ‖ root (32): what we last cosigned |
//! | `witnessed_size` | witness server id | the size of ours that witness last cosigned |
//! | `configurations` | serial | (generated_at, `SignedConfiguration` envelope) |
//! | `configurations_by_time` | (generated_at, serial) | () |
//! | `federated_configurations` | (instance, serial) | (generated_at, `SignedConfiguration` envelope) of a federated instance |
//! | `federated_configurations_by_time` | (instance, generated_at, serial) | () |
//! | `archives` | first index | (last index, file path, SHA-256 of the file) |

use redb::{ReadableTable, TableDefinition};
use tlog::{Hash, NodeSource, TreeError};

use crate::LogError;

pub(crate) const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
pub(crate) const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
pub(crate) const NODES: TableDefinition<(u8, u64), &[u8; 32]> =
    TableDefinition::new("merkle_nodes");
pub(crate) const BY_MESSAGE_ID: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("index_message_id");
pub(crate) const BY_TIME: TableDefinition<(i64, u64), ()> = TableDefinition::new("index_logged_at");
pub(crate) const BY_SUBJECT: TableDefinition<(&[u8; 32], u64), ()> =
    TableDefinition::new("index_subject");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");
pub(crate) const WITNESS_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("witness_state");
pub(crate) const WITNESSED: TableDefinition<&str, u64> = TableDefinition::new("witnessed_size");
pub(crate) const CONFIGURATIONS: TableDefinition<u64, (i64, &[u8])> =
    TableDefinition::new("configurations");
pub(crate) const CONF_BY_TIME: TableDefinition<(i64, u64), ()> =
    TableDefinition::new("configurations_by_time");
pub(crate) const FEDERATED_CONFIGURATIONS: TableDefinition<(&str, u64), (i64, &[u8])> =
    TableDefinition::new("federated_configurations");
pub(crate) const FEDERATED_CONF_BY_TIME: TableDefinition<(&str, i64, u64), ()> =
    TableDefinition::new("federated_configurations_by_time");
pub(crate) const ARCHIVES: TableDefinition<u64, (u64, &str, &[u8; 32])> =
    TableDefinition::new("archives");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_SALT: &str = "salt";
/// How many times the database was opened (u32 BE); the epoch of the body nonces (`crypto`).
pub(crate) const META_OPEN_EPOCH: &str = "open_epoch";
/// Stored checkpoints below this tree size (u64 BE) were thinned already.
pub(crate) const META_CHECKPOINTS_THINNED_BELOW: &str = "checkpoints_thinned_below";
pub(crate) const META_BODY_KEY_CHECK: &str = "body_key_check";
/// Where in the write-ahead log the tables were last applied up to (`wal::Position`).
pub(crate) const META_WAL_APPLIED: &str = "wal_applied";
/// The storage format this code writes and reads: `records` values may be entry locations in
/// the write-ahead log (`wal::EntryLocation`), and `merkle_nodes` lacks the levels
/// [`stores_level`] leaves out.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The format earlier versions wrote (`records` values are always the record bytes, every
/// Merkle level is stored; the levels this version leaves out are then never read). This
/// version reads it and marks the log [`FORMAT_VERSION`] when it opens it, so that an earlier
/// version refuses the log rather than misreading the locations written after that.
pub(crate) const FORMAT_VERSION_RECORDS_INLINE: u8 = 1;

/// The log's size (number of leaves): one past the last leaf hash in `merkle_nodes`. Leaves are
/// never deleted (archiving keeps them), and deriving the size spares every group commit a write
/// to a further table.
pub(crate) fn read_size(
    nodes: &impl ReadableTable<(u8, u64), &'static [u8; 32]>,
) -> Result<u64, LogError> {
    let last = nodes.range((0u8, 0u64)..=(0u8, u64::MAX))?.next_back();
    match last {
        None => Ok(0),
        Some(row) => Ok(row?.0.value().1 + 1),
    }
}

/// `merkle_nodes` holds the nodes of the levels that are multiples of this; a node of another
/// level is hashed from the two below it. A leaf adds 1 + 1/16 + 1/256 + … rows instead of
/// 1 + 1/2 + 1/4 + … (two), which is a sixth of the B-tree inserts the indexer makes per
/// record; a proof reads at most 2^3 stored nodes (7 hashes) for one it needs, under 4 on
/// average.
pub(crate) const NODE_LEVEL_STRIDE: u8 = 4;

/// Whether `merkle_nodes` holds the nodes of `level`.
pub(crate) fn stores_level(level: u8) -> bool {
    level.is_multiple_of(NODE_LEVEL_STRIDE)
}

/// The `merkle_nodes` table of one transaction as the tlog crate's node store.
pub(crate) struct Nodes<T>(pub(crate) T);

impl<T: ReadableTable<(u8, u64), &'static [u8; 32]>> NodeSource for Nodes<T> {
    type Error = LogError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        if !stores_level(level) {
            // Level ≥ 1 and the node lies inside the tree, so both children do too (and
            // `2 · index + 1` < 2^64).
            let left = self.node(level - 1, 2 * index)?;
            let right = self.node(level - 1, 2 * index + 1)?;
            return Ok(tlog::node_hash(&left, &right));
        }
        self.0
            .get((level, index))?
            .map(|v| *v.value())
            .ok_or_else(|| LogError::corrupt(format!("Merkle node ({level}, {index}) is missing")))
    }
}

/// A tlog tree error as a log error.
pub(crate) fn tree_error(e: TreeError<LogError>) -> LogError {
    match e {
        TreeError::IndexOutOfRange { index, size } => LogError::OutOfRange {
            what: "leaf index",
            value: index,
            size,
        },
        TreeError::SizesOutOfOrder { old_size, new_size } => LogError::OutOfRange {
            what: "old tree size",
            value: old_size,
            size: new_size,
        },
        TreeError::Source(e) => e,
    }
}
