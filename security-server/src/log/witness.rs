//! The witness side of checkpoints (DESIGN §6, C2SP `tlog-witness`): a peer's checkpoint is
//! cosigned only if it is signed by that peer's member key and consistent with what this server
//! cosigned of that log before, so a server cannot fork or rewrite its history unseen.

use exchange::{ServerProxyCode, XRoadError};
use globalconf::{GlobalConf, SecurityServerId};
use msglog::MessageLog;
use proto::v1 as pb;
use tlog::{Checkpoint, CosignatureSigner, NoteVerifier};

/// The witness side: checks a peer's checkpoint against what this server saw of that log before,
/// and cosigns it. The caller has established, from the pinned TLS certificate, which server
/// `peer` is.
pub async fn witness(
    log: &MessageLog,
    conf: &GlobalConf,
    peer: &SecurityServerId,
    request: pb::AddCheckpointRequest,
    signer: CosignatureSigner,
    now: u64,
) -> Result<pb::AddCheckpointResponse, XRoadError> {
    let refuse = |msg: String| XRoadError::new(ServerProxyCode::CheckpointRefused, msg);
    let note = tlog::note::parse(&request.checkpoint)
        .map_err(|e| refuse(format!("malformed note: {e}")))?;
    let cp = Checkpoint::parse_body(note.text())
        .map_err(|e| refuse(format!("malformed checkpoint: {e}")))?;
    if cp.origin() != peer.to_string() {
        return Err(refuse(format!(
            "{peer} may only submit its own checkpoints, not {}",
            cp.origin()
        )));
    }
    let owner = conf
        .member(peer.owner())
        .ok_or_else(|| refuse(format!("{} is not a member", peer.owner())))?;
    let name = tlog::log_key_name(&peer.to_string());
    let verifiers: Vec<NoteVerifier> = owner
        .signing_keys
        .iter()
        .filter_map(|k| NoteVerifier::new(name.clone(), k.public_key).ok())
        .collect();
    note.verify(&verifiers)
        .map_err(|e| refuse(format!("the log's signature does not verify: {e}")))?;
    let proof: Vec<tlog::Hash> = request
        .consistency_proof
        .iter()
        .map(|h| <tlog::Hash>::try_from(h.as_slice()))
        .collect::<Result<_, _>>()
        .map_err(|_| refuse("a proof hash is not 32 bytes".into()))?;

    let log = log.clone();
    let origin = cp.origin().to_owned();
    let old_size = request.old_size;
    let decision = tokio::task::spawn_blocking(move || -> Result<Result<(), u64>, String> {
        // Check and persist as one step: a concurrent submission cannot slip between them.
        loop {
            let previous = log.witness_state(&origin).map_err(|e| e.to_string())?;
            match tlog::check_update(previous.as_ref(), old_size, &cp, &proof) {
                Ok(next) => {
                    if log
                        .witness_update(&origin, previous.as_ref(), next)
                        .map_err(|e| e.to_string())?
                    {
                        return Ok(Ok(()));
                    }
                }
                Err(tlog::WitnessRefusal::Conflict { known_size, .. }) => {
                    return Ok(Err(known_size));
                }
                Err(other) => return Err(format!("refused: {other}")),
            }
        }
    })
    .await
    .map_err(|e| XRoadError::new(ServerProxyCode::InternalError, e.to_string()))?
    .map_err(refuse)?;
    match decision {
        Err(known) => Ok(pb::AddCheckpointResponse {
            result: Some(pb::add_checkpoint_response::Result::ConflictKnownSize(
                known,
            )),
        }),
        Ok(()) => {
            let cp = Checkpoint::parse_body(note.text()).map_err(|e| refuse(e.to_string()))?;
            let sig = tlog::cosign(&cp, &signer, now).map_err(|e| refuse(e.to_string()))?;
            Ok(pb::AddCheckpointResponse {
                result: Some(pb::add_checkpoint_response::Result::Cosignature(
                    sig.to_line(),
                )),
            })
        }
    }
}
