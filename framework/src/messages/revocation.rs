//! Revocations across a cluster: recorded on this server and sent to every other node
//! over the backplane, and recorded here when another node's arrive. Only a key's
//! fingerprint travels, never the key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::central::MessageCentral;
use crate::auth::{Fingerprint, Revoked};
use crate::cluster::{Backplane, ClusterError, Reached, Topic};
use crate::protocol::ModelSet;

/// A revocation on the backplane.
#[derive(serde::Serialize, serde::Deserialize)]
struct Notice {
    revoke: Revocation,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Revocation {
    node: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// When the user was revoked, in milliseconds since the Unix epoch (the revoking
    /// node's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<u64>,
    /// The key's fingerprint, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl<P: ModelSet> MessageCentral<P> {
    /// Records `revoked` here and, in a cluster, sends it to every other node; the
    /// number of nodes the backplane reached (0 on a single server; `None` where the
    /// backplane cannot count).
    ///
    /// # Errors
    ///
    /// The backplane's error when the notice could not be published (it may have been,
    /// [`ClusterError::may_have_been_delivered`]); it holds on this server either way.
    pub(crate) async fn revoke(&self, revoked: Revoked) -> Result<Reached, ClusterError> {
        self.inner.revocations.record(&revoked);
        let Some(cluster) = self.cluster() else {
            return Ok(Some(0));
        };
        let revocation = match revoked {
            Revoked::User { user, at } => Revocation {
                node: cluster.node(),
                user: Some(user),
                at: Some(
                    at.duration_since(UNIX_EPOCH)
                        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
                ),
                key: None,
            },
            Revoked::Key(key) => Revocation {
                node: cluster.node(),
                user: None,
                at: None,
                key: Some(key.to_hex()),
            },
        };
        let payload = serde_json::to_vec(&Notice { revoke: revocation })
            .map_err(|error| ClusterError::Unavailable(format!("cannot encode the revocation: {error}")))?;
        cluster
            .publish_confirmed(Topic::Broadcasts, payload, None)
            .await
    }

    /// Records a revocation another node sent.
    pub(crate) fn revocation_arrived(&self, payload: &[u8]) {
        let revocation = match serde_json::from_slice::<Notice>(payload) {
            Ok(notice) => notice.revoke,
            Err(error) => {
                tracing::warn!(target: "streampod::cluster", %error, "ignoring a malformed revocation");
                return;
            }
        };
        if self.cluster().map(Backplane::node) == Some(revocation.node) {
            return;
        }
        let revoked = match (revocation.user, revocation.key) {
            (Some(user), None) => Revoked::User {
                user,
                // Without a time (or past the clock's range): as of its arrival.
                at: revocation
                    .at
                    .and_then(|millis| UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
                    .unwrap_or_else(SystemTime::now),
            },
            (None, Some(key)) => match Fingerprint::from_hex(&key) {
                Some(key) => Revoked::Key(key),
                None => {
                    tracing::warn!(target: "streampod::cluster", "ignoring a revocation with a malformed key fingerprint");
                    return;
                }
            },
            _ => {
                tracing::warn!(target: "streampod::cluster", "ignoring a revocation that names neither one user nor one key");
                return;
            }
        };
        tracing::debug!(target: "streampod::cluster", "revocation from another node");
        self.inner.revocations.record(&revoked);
    }
}
