//! The message-signing keys this server holds, one or more per member it signs for (its owner and,
//! on a shared server, the members whose subsystems it hosts), and the choice of which to use.

use certs::SigningKey;
use globalconf::{GlobalConf, MemberId};

/// The keys on disk, by member.
#[derive(Debug)]
pub struct MemberKeys {
    keys: Vec<(MemberId, SigningKey)>,
}

impl MemberKeys {
    pub fn new(keys: Vec<(MemberId, SigningKey)>) -> Self {
        Self { keys }
    }

    /// A key of `member` that the configuration lists as valid at `now` — the newest such key
    /// when several are (rotation: a new key is used as soon as it is listed and valid).
    pub fn signer(&self, member: &MemberId, conf: &GlobalConf, now: i64) -> Option<&SigningKey> {
        self.keys
            .iter()
            .filter(|(m, _)| m == member)
            .filter_map(|(_, k)| {
                conf.member_key_at(member, &k.key_id(), now)
                    .map(|listed| (listed.valid_from, k))
            })
            .max_by_key(|(from, _)| *from)
            .map(|(_, k)| k)
    }
}
