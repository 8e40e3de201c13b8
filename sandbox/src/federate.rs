//! Two running instances federated with each other (`sandbox --federated`, DESIGN §3): each
//! registry adds the other's anchor (the agreement both operators make out of band), and every
//! security server then holds the other instance's configuration as well as its own.

use std::time::Duration;

use globalconf::{Anchor, InstanceId};

use crate::federation::{FederatedDescription, Federation, SandboxError};

fn setup(msg: impl Into<String>) -> SandboxError {
    SandboxError::Setup(msg.into())
}

/// Federates `a` and `b` both ways, waits until every running server of each can exchange with
/// the other instance, and describes each in the other's `federation.json`.
pub async fn federate(a: &mut Federation, b: &mut Federation) -> Result<(), SandboxError> {
    let anchor_a = Anchor::load(&a.description().anchor).map_err(|e| setup(e.to_string()))?;
    let anchor_b = Anchor::load(&b.description().anchor).map_err(|e| setup(e.to_string()))?;
    agree(a, &anchor_b).await?;
    agree(b, &anchor_a).await?;
    // Each resident portal may ask the other instance's members who accessed a resident's data.
    if let Some(portal) = a.spec().portal.clone() {
        b.grant_find_usage_to(&portal)?;
    }
    if let Some(portal) = b.spec().portal.clone() {
        a.grant_find_usage_to(&portal)?;
    }
    wait_until_federated(a, anchor_b.instance()).await?;
    wait_until_federated(b, anchor_a.instance()).await?;
    let describe =
        |f: &Federation, anchor: &Anchor| -> Result<FederatedDescription, SandboxError> {
            let mut description = f.description().clone();
            description.federated.clear();
            Ok(FederatedDescription {
                anchor_fingerprint: anchor.fingerprint().map_err(|e| setup(e.to_string()))?,
                description,
            })
        };
    let (da, db) = (describe(a, &anchor_a)?, describe(b, &anchor_b)?);
    a.describe_federated(db)?;
    b.describe_federated(da)?;
    Ok(())
}

/// `f`'s registry adds `other`'s anchor.
pub async fn agree(f: &Federation, other: &Anchor) -> Result<(), SandboxError> {
    let text = other.to_toml().map_err(|e| setup(e.to_string()))?;
    f.registry().add_federation(text).await?;
    Ok(())
}

/// `f`'s registry ends the federation with `other`.
pub async fn end(f: &Federation, other: &InstanceId) -> Result<(), SandboxError> {
    f.registry().remove_federation(other.clone()).await?;
    Ok(())
}

/// Has every running server of `f` fetch its registry's newest configuration, then waits until
/// each holds a usable configuration of `other`.
pub async fn wait_until_federated(f: &Federation, other: &InstanceId) -> Result<(), SandboxError> {
    for s in f.servers() {
        let Some(running) = s.running() else {
            continue;
        };
        running
            .conf
            .refresh()
            .await
            .map_err(|e| setup(format!("{}: {e}", s.id)))?;
        let federation = std::sync::Arc::clone(&running.federation);
        let ready = runtime::testing::within(Duration::from_secs(30), || {
            let (federation, other) = (federation.clone(), other.clone());
            async move { federation.conf_for(&other).ok().map(|_| ()) }
        })
        .await;
        if ready.is_none() {
            let why = running
                .federation
                .conf_for(other)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(setup(format!(
                "{} cannot exchange with instance {other}: {why}",
                s.id
            )));
        }
    }
    Ok(())
}
