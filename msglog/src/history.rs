//! What the log keeps beside its records: its own signed checkpoints (with the cosignatures
//! collected for them), the witness state of other servers' logs that this server cosigns,
//! how far each of our witnesses has cosigned, and the history of global configurations (so
//! evidence can carry the configuration in force when a record was written).

use std::collections::BTreeSet;

use redb::ReadableTable as _;
use tlog::{Checkpoint, NoteSignature, WitnessState};

use crate::LogError;
use crate::store::MessageLog;
use crate::tables::{
    CHECKPOINTS, CONF_BY_TIME, CONFIGURATIONS, FEDERATED_CONF_BY_TIME, FEDERATED_CONFIGURATIONS,
    META, META_CHECKPOINTS_THINNED_BELOW, NODES, Nodes, WITNESS_STATE, WITNESSED, read_size,
    tree_error,
};

/// How many stored checkpoints [`MessageLog::checkpoint_covering`] looks at from each end.
const COVERING_WINDOW: usize = 64;

/// How [`MessageLog::thin_checkpoints`] thins the stored checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thinning {
    /// The newest this many checkpoints are all kept.
    pub keep_recent: usize,
    /// Older ones are kept one per this many records of tree size.
    pub bucket_records: u64,
}

impl Thinning {
    /// About one hour of checkpoints at one a second; one checkpoint per 65,536 records.
    pub const DEFAULT: Thinning = Thinning {
        keep_recent: 3600,
        bucket_records: 1 << 16,
    };
}

impl MessageLog {
    /// Stores the signed checkpoint note of tree size `size`, replacing any note stored for that
    /// size (so a note re-rendered with more cosignatures replaces the one it grew from).
    ///
    /// Refused unless the note's body is a checkpoint of exactly this size whose root is this
    /// log's root at that size. The signatures are not checked here (the log does not know its
    /// server's keys); evidence verification checks them.
    pub fn store_checkpoint(&self, size: u64, note_text: &str) -> Result<(), LogError> {
        let note = tlog::note::parse(note_text)
            .map_err(|e| LogError::InvalidCheckpoint(format!("not a signed note: {e}")))?;
        let cp = Checkpoint::parse_body(note.text())
            .map_err(|e| LogError::InvalidCheckpoint(e.to_string()))?;
        if cp.size() != size {
            return Err(LogError::InvalidCheckpoint(format!(
                "the note is of size {}, not {size}",
                cp.size()
            )));
        }
        self.sync()?;
        let (_open, txn) = self.write_txn()?;
        {
            let nodes = Nodes(txn.open_table(NODES)?);
            let log_size = read_size(&nodes.0)?;
            if size > log_size {
                return Err(LogError::OutOfRange {
                    what: "checkpoint size",
                    value: size,
                    size: log_size,
                });
            }
            let root = tlog::root(&nodes, size).map_err(tree_error)?;
            if &root != cp.root() {
                return Err(LogError::InvalidCheckpoint(format!(
                    "the note's root is not this log's root at size {size}"
                )));
            }
            txn.open_table(CHECKPOINTS)?.insert(size, note_text)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Adds cosignature lines to the stored checkpoint of `size` (lines already there are not
    /// repeated); returns the new note text.
    pub fn add_cosignatures(
        &self,
        size: u64,
        cosignatures: &[NoteSignature],
    ) -> Result<String, LogError> {
        let (_open, txn) = self.write_txn()?;
        let text = {
            let mut table = txn.open_table(CHECKPOINTS)?;
            let stored = table
                .get(size)?
                .map(|v| v.value().to_owned())
                .ok_or_else(|| {
                    LogError::InvalidCheckpoint(format!("no checkpoint of size {size} is stored"))
                })?;
            let mut note = tlog::note::parse(&stored)
                .map_err(|e| LogError::corrupt(format!("stored checkpoint {size}: {e}")))?;
            for sig in cosignatures {
                if !note.signatures().contains(sig) {
                    note.push_signature(sig.clone())
                        .map_err(|e| LogError::InvalidCheckpoint(e.to_string()))?;
                }
            }
            let text = note.render();
            table.insert(size, text.as_str())?;
            text
        };
        txn.commit()?;
        Ok(text)
    }

    /// Thins the stored checkpoints so that they do not grow by one a second forever: the newest
    /// `keep_recent` stay; of the older ones, each bucket of `bucket_records` tree sizes keeps
    /// one, the most cosigned (the larger on a tie). Any checkpoint at least as large as a
    /// record's index covers it, so evidence for every record can still be exported, with the
    /// same proof lengths; consistency proofs for witnesses come from the Merkle nodes, not
    /// from stored checkpoints. Incremental: buckets already thinned are not read again.
    /// Returns how many checkpoints were removed.
    pub fn thin_checkpoints(&self, thinning: Thinning) -> Result<u64, LogError> {
        let bucket = thinning.bucket_records.max(1);
        let (_open, txn) = self.write_txn()?;
        let removed = {
            let mut table = txn.open_table(CHECKPOINTS)?;
            let Some(row) = table.iter()?.rev().nth(thinning.keep_recent) else {
                return Ok(0);
            };
            // Only whole buckets below the newest checkpoint that is not a recent one.
            let end = row?.0.value() / bucket * bucket;
            let mut meta = txn.open_table(META)?;
            let start = match meta.get(META_CHECKPOINTS_THINNED_BELOW)? {
                None => 0,
                Some(v) => <[u8; 8]>::try_from(v.value())
                    .map(u64::from_be_bytes)
                    .map_err(|_| {
                        LogError::corrupt("meta.checkpoints_thinned_below is not 8 bytes")
                    })?,
            };
            if start >= end {
                return Ok(0);
            }
            // For each bucket, the best checkpoint so far and the ones to remove.
            let mut remove = Vec::new();
            let mut best: Option<(u64, usize, u64)> = None; // (bucket, cosignatures, size)
            for row in table.range(start..end)? {
                let (k, v) = row?;
                let (size, count) = (k.value(), cosignature_count(v.value()));
                let b = size / bucket;
                match best {
                    Some((best_b, best_count, best_size)) if best_b == b => {
                        if count >= best_count {
                            remove.push(best_size);
                            best = Some((b, count, size));
                        } else {
                            remove.push(size);
                        }
                    }
                    _ => best = Some((b, count, size)),
                }
            }
            for size in &remove {
                table.remove(size)?;
            }
            meta.insert(META_CHECKPOINTS_THINNED_BELOW, end.to_be_bytes().as_slice())?;
            remove.len() as u64
        };
        txn.commit()?;
        Ok(removed)
    }

    /// The newest stored checkpoint: (size, note text).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, LogError> {
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(CHECKPOINTS)?;
        Ok(table
            .last()?
            .map(|(k, v)| (k.value(), v.value().to_owned())))
    }

    /// The stored checkpoint of exactly `size`, if any.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, LogError> {
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(CHECKPOINTS)?;
        Ok(table.get(size)?.map(|v| v.value().to_owned()))
    }

    /// A stored checkpoint that covers the first `n` records (size ≥ `n`), for evidence.
    ///
    /// Looks at the 64 smallest checkpoints of size ≥ `n` and the 64 newest overall, and picks
    /// the one with the most cosignature lines (signatures not under the log's own key name),
    /// the newer on a tie: the most witnessed checkpoint is the strongest evidence, and any
    /// covering size gives equally short proofs. `None` if no stored checkpoint is that large.
    pub fn checkpoint_covering(&self, n: u64) -> Result<Option<(u64, String)>, LogError> {
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(CHECKPOINTS)?;
        let mut candidates = Vec::new();
        for row in table.range(n..)?.take(COVERING_WINDOW) {
            let (k, v) = row?;
            candidates.push((k.value(), v.value().to_owned()));
        }
        for row in table.range(n..)?.rev().take(COVERING_WINDOW) {
            let (k, v) = row?;
            candidates.push((k.value(), v.value().to_owned()));
        }
        let best = candidates
            .into_iter()
            .map(|(size, text)| (cosignature_count(&text), size, text))
            .max_by_key(|(count, size, _)| (*count, *size));
        Ok(best.map(|(_, size, text)| (size, text)))
    }

    // --- the witness side: other servers' logs ----------------------------------------------

    /// What this server last cosigned for the log `origin` (another server).
    pub fn witness_state(&self, origin: &str) -> Result<Option<WitnessState>, LogError> {
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(WITNESS_STATE)?;
        let value = table.get(origin)?.map(|v| v.value().to_vec());
        value.map(|v| decode_witness_state(origin, &v)).transpose()
    }

    /// Compare-and-set of the witness state of `origin`, in one write transaction: stores `new`
    /// and returns `true` only if the stored state is still `expected` (`None`: nothing
    /// stored). On `false` the caller re-reads and decides again (tlog::witness).
    pub fn witness_update(
        &self,
        origin: &str,
        expected: Option<&WitnessState>,
        new: WitnessState,
    ) -> Result<bool, LogError> {
        if new.origin != origin {
            return Err(LogError::InvalidCheckpoint(format!(
                "witness state of {:?} stored under {origin:?}",
                new.origin
            )));
        }
        let (_open, txn) = self.write_txn()?;
        {
            let mut table = txn.open_table(WITNESS_STATE)?;
            let current = table.get(origin)?.map(|v| v.value().to_vec());
            let current = current
                .map(|v| decode_witness_state(origin, &v))
                .transpose()?;
            if current.as_ref() != expected {
                return Ok(false);
            }
            let mut value = Vec::with_capacity(40);
            value.extend_from_slice(&new.size.to_be_bytes());
            value.extend_from_slice(&new.root);
            table.insert(origin, value.as_slice())?;
        }
        txn.commit()?;
        Ok(true)
    }

    // --- our witnesses ----------------------------------------------------------------------

    /// The size of our log that `witness` last cosigned (0 if never): the old size of the next
    /// request to it.
    pub fn witnessed_size(&self, witness: &str) -> Result<u64, LogError> {
        let (_open, txn) = self.read_txn()?;
        let table = txn.open_table(WITNESSED)?;
        Ok(table.get(witness)?.map_or(0, |v| v.value()))
    }

    pub fn set_witnessed_size(&self, witness: &str, size: u64) -> Result<(), LogError> {
        let (_open, txn) = self.write_txn()?;
        txn.open_table(WITNESSED)?.insert(witness, size)?;
        txn.commit()?;
        Ok(())
    }

    // --- configuration history --------------------------------------------------------------

    /// Keeps a signed configuration envelope (as received and verified) under its serial;
    /// storing the same one again does nothing. At national size an envelope is about 1.2 MiB,
    /// so the history grows by that much per registry publication.
    pub fn store_configuration(
        &self,
        serial: u64,
        generated_at: i64,
        envelope: &[u8],
    ) -> Result<(), LogError> {
        let (_open, txn) = self.write_txn()?;
        {
            let mut confs = txn.open_table(CONFIGURATIONS)?;
            let existing = confs.get(serial)?.map(|v| v.value().1 == envelope);
            match existing {
                Some(true) => return Ok(()),
                Some(false) => return Err(LogError::ConfigurationConflict(serial)),
                None => {}
            }
            confs.insert(serial, (generated_at, envelope))?;
            txn.open_table(CONF_BY_TIME)?
                .insert((generated_at, serial), ())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// [`MessageLog::store_configuration`] for a configuration of a federated instance, whose
    /// serials are that instance's own.
    pub fn store_federated_configuration(
        &self,
        instance: &str,
        serial: u64,
        generated_at: i64,
        envelope: &[u8],
    ) -> Result<(), LogError> {
        let (_open, txn) = self.write_txn()?;
        {
            let mut confs = txn.open_table(FEDERATED_CONFIGURATIONS)?;
            let existing = confs
                .get((instance, serial))?
                .map(|v| v.value().1 == envelope);
            match existing {
                Some(true) => return Ok(()),
                Some(false) => return Err(LogError::ConfigurationConflict(serial)),
                None => {}
            }
            confs.insert((instance, serial), (generated_at, envelope))?;
            txn.open_table(FEDERATED_CONF_BY_TIME)?
                .insert((instance, generated_at, serial), ())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// [`MessageLog::configurations_for`] of the federated instance `instance`: what a record
    /// of a cross-border exchange needs, since a key of the other side only its instance's
    /// configuration lists.
    pub fn federated_configurations_for(
        &self,
        instance: &str,
        times: &[i64],
    ) -> Result<Vec<Vec<u8>>, LogError> {
        let (_open, txn) = self.read_txn()?;
        let by_time = txn.open_table(FEDERATED_CONF_BY_TIME)?;
        let confs = txn.open_table(FEDERATED_CONFIGURATIONS)?;
        let mut serials = BTreeSet::new();
        for &t in times {
            if let Some(row) = by_time
                .range((instance, i64::MIN, 0)..=(instance, t, u64::MAX))?
                .next_back()
            {
                serials.insert(row?.0.value().2);
            }
        }
        if let Some(row) = confs
            .range((instance, 0)..=(instance, u64::MAX))?
            .next_back()
        {
            serials.insert(row?.0.value().1);
        }
        let mut out = Vec::with_capacity(serials.len());
        for serial in serials {
            let envelope = confs
                .get((instance, serial))?
                .ok_or_else(|| {
                    LogError::corrupt(format!(
                        "configuration {serial} of {instance} is indexed but missing"
                    ))
                })?
                .value()
                .1
                .to_vec();
            out.push(envelope);
        }
        Ok(out)
    }

    /// The envelopes needed to check records made at `times` (Unix seconds): for each time the
    /// newest configuration generated at or before it (the one in force then), and the newest
    /// configuration overall; each once, in serial order.
    pub fn configurations_for(&self, times: &[i64]) -> Result<Vec<Vec<u8>>, LogError> {
        let (_open, txn) = self.read_txn()?;
        let by_time = txn.open_table(CONF_BY_TIME)?;
        let confs = txn.open_table(CONFIGURATIONS)?;
        let mut serials = BTreeSet::new();
        for &t in times {
            if let Some(row) = by_time.range(..=(t, u64::MAX))?.next_back() {
                serials.insert(row?.0.value().1);
            }
        }
        if let Some((serial, _)) = confs.last()? {
            serials.insert(serial.value());
        }
        let mut out = Vec::with_capacity(serials.len());
        for serial in serials {
            let envelope = confs
                .get(serial)?
                .ok_or_else(|| {
                    LogError::corrupt(format!("configuration {serial} is indexed but missing"))
                })?
                .value()
                .1
                .to_vec();
            out.push(envelope);
        }
        Ok(out)
    }
}

fn decode_witness_state(origin: &str, value: &[u8]) -> Result<WitnessState, LogError> {
    let (size, root) = value
        .split_first_chunk::<8>()
        .filter(|(_, root)| root.len() == 32)
        .ok_or_else(|| LogError::corrupt(format!("witness state of {origin} is not 40 bytes")))?;
    let mut r = [0u8; 32];
    r.copy_from_slice(root);
    Ok(WitnessState {
        origin: origin.to_owned(),
        size: u64::from_be_bytes(*size),
        root: r,
    })
}

/// Signature lines of a checkpoint note other than the log's own (by key name).
fn cosignature_count(note_text: &str) -> usize {
    let Ok(note) = tlog::note::parse(note_text) else {
        return 0;
    };
    let Some(origin) = note.text().split('\n').next() else {
        return 0;
    };
    let own = tlog::log_key_name(origin);
    note.signatures().iter().filter(|s| s.name() != own).count()
}
