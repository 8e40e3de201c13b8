//! The message-signing keys this server holds, one or more per member it signs for (its owner and,
//! on a shared server, the members whose subsystems it hosts), and the choice of which to use.
//! A key made while the server runs (`keys rotate`) joins the others at once; it is used once the
//! configuration lists it as valid.

use std::sync::{Arc, PoisonError, RwLock};

use certs::SigningKey;
use globalconf::{GlobalConf, MemberId};

/// The keys on disk, by member.
#[derive(Debug)]
pub struct MemberKeys {
    keys: RwLock<Vec<(MemberId, Arc<SigningKey>)>>,
}

impl MemberKeys {
    pub fn new(keys: Vec<(MemberId, SigningKey)>) -> Self {
        Self {
            keys: RwLock::new(keys.into_iter().map(|(m, k)| (m, Arc::new(k))).collect()),
        }
    }

    /// Holds one more key of `member` (already saved on disk).
    pub fn add(&self, member: MemberId, key: SigningKey) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((member, Arc::new(key)));
    }

    /// Every key held, by member.
    pub fn all(&self) -> Vec<(MemberId, Arc<SigningKey>)> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A key of `member` that the configuration lists as valid at `now` — the newest such key
    /// when several are (rotation: a new key is used as soon as it is listed and valid).
    pub fn signer(
        &self,
        member: &MemberId,
        conf: &GlobalConf,
        now: i64,
    ) -> Option<Arc<SigningKey>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(m, _)| m == member)
            .filter_map(|(_, k)| {
                conf.member_key_at(member, &k.key_id(), now)
                    .map(|listed| (listed.valid_from, k))
            })
            .max_by_key(|(from, _)| *from)
            .map(|(_, k)| Arc::clone(k))
    }
}
