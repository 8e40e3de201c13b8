//! The replay window across restarts (DESIGN §5.2). The server proxy's replay cache is kept in
//! memory; at start it is filled again from the requests this server's log holds, so a request
//! captured before a restart (or a crash) is refused as `DuplicateMessage` for the whole window,
//! as it would have been without the restart: a provider's system never sees a signed request
//! twice. The log holds every request the server proxy accepted, before it was passed on.

use std::time::{Duration, Instant};

use exchange::replay::{ReplayCache, ReplayError};
use globalconf::ClientId;
use msglog::{LogError, MessageLog};
use prost::Message as _;
use proto::v1 as pb;

/// Puts every request the server proxy accepted that could still be replayed into `replay`:
/// those logged since `now - window - max_skew` (a request is accepted at most `max_skew` away
/// from its signed created-at, and its id is remembered `window` after that). Answers how many
/// were put back. Blocking: it reads the log.
pub fn rebuild(
    log: &MessageLog,
    replay: &ReplayCache,
    max_skew: Duration,
    now: i64,
) -> Result<usize, LogError> {
    let started = Instant::now();
    let reach = replay.window().saturating_add(max_skew);
    let reach_secs = i64::try_from(reach.as_secs()).unwrap_or(i64::MAX);
    let from_ms = now.saturating_sub(reach_secs).saturating_mul(1000);
    let mut restored = 0;
    for index in log.find_by_time(from_ms, i64::MAX)? {
        let Some(stored) = log.record(index)? else {
            continue;
        };
        let record = stored.decode()?;
        if record.kind != pb::LogKind::Request as i32 || record.side != pb::LogSide::Server as i32 {
            continue;
        }
        // The log keeps only headers that verified, so these decode; one that does not cannot
        // be replayed either.
        let Ok(header) = pb::RequestHeader::decode(record.signed_header.as_slice()) else {
            continue;
        };
        let Ok(client) = header.client.parse::<ClientId>() else {
            continue;
        };
        let key = exchange::message::replay_key(&header);
        match replay.check_and_insert(&client, key, header.created_at, now) {
            Ok(()) => restored += 1,
            Err(ReplayError::Duplicate | ReplayError::Expired) => {}
            Err(ReplayError::Full) => {
                tracing::warn!(restored, "the replay cache filled up while it was rebuilt");
                break;
            }
        }
    }
    tracing::info!(
        restored,
        elapsed_ms = started.elapsed().as_millis(),
        "replay window rebuilt from the message log"
    );
    Ok(restored)
}
