//! Reading a channel's history on demand ([`MessageCentral::history`]): what a
//! dashboard's first paint, an audit or another backend asks for, from this server's
//! memory or, in a cluster, from the backplane's history.

use serde_json::value::RawValue;

use super::central::MessageCentral;
use crate::cluster::{ClusterError, Envelope};
use crate::protocol::history::Position;
use crate::protocol::ModelSet;

/// A page of a channel's history, oldest message first.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The history's epoch: positions of another epoch mean nothing in this one.
    pub epoch: String,
    /// The newest offset given out (0 before the first post).
    pub newest: u64,
    /// Whether nothing after the position asked for (or before the first message
    /// here, reading from the start) has been forgotten or lost to a new epoch.
    pub complete: bool,
    /// The messages after the position asked for, at most the limit asked for; read
    /// on from the last one's offset.
    pub messages: Vec<HistoryEntry>,
}

/// One kept message and its offset.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// Its offset in the channel's order.
    pub offset: u64,
    /// The message as the channel's subscribers got it: `{"className":…,"data":…}`.
    pub message: Box<RawValue>,
}

/// Why a channel's history could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The channel keeps no history: configure it with
    /// [`ChannelConfig::with_history`](super::ChannelConfig::with_history).
    #[error("channel '{0}' keeps no history (configure it with ChannelConfig::with_history)")]
    NotKept(String),
    /// The cluster's history could not be read; try again.
    #[error("the cluster's history could not be read: {0}")]
    Cluster(#[from] ClusterError),
}

impl<P: ModelSet> MessageCentral<P> {
    /// Up to `limit` messages of `channel`'s history after `since` (from the oldest
    /// kept when `None`), oldest first: this server's on a single server, the
    /// cluster's with a backplane that keeps history.
    ///
    /// ```no_run
    /// # streampod::__doc_models!();
    /// # async fn demo(messages: streampod::messages::MessageCentral<Protocol>) -> Result<(), streampod::messages::HistoryError> {
    /// let page = messages.history("room-1", None, 50).await?;
    /// for entry in &page.messages {
    ///     println!("{} {}", entry.offset, entry.message);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`HistoryError::NotKept`] for a channel without history; [`HistoryError::Cluster`]
    /// when the cluster's history could not be read.
    pub async fn history(
        &self,
        channel: &str,
        since: Option<Position>,
        limit: usize,
    ) -> Result<HistoryPage, HistoryError> {
        let not_kept = || HistoryError::NotKept(channel.to_owned());
        let record = self.record_of(channel).ok_or_else(not_kept)?;
        let (epoch, newest, kept, same_epoch) = match self.cluster() {
            Some(cluster) => {
                let position = since.as_ref().map(|since| (&*since.epoch, since.offset));
                let mut read = cluster.read_history(channel, position, record).await?;
                let same = since
                    .as_ref()
                    .is_none_or(|since| *since.epoch == *read.epoch || read.continues);
                if (since.is_none() || !same) && read.newest > 0 {
                    // A read without a position gives the position only: read again
                    // from the start of the epoch it named.
                    let epoch = read.epoch.clone();
                    read = cluster.read_history(channel, Some((&epoch, 0)), record).await?;
                }
                let kept = read
                    .entries
                    .iter()
                    .filter_map(|(offset, payload)| {
                        let envelope: Envelope<'_> = serde_json::from_slice(payload).ok()?;
                        Some((*offset, envelope.object.to_owned()))
                    })
                    .collect::<Vec<_>>();
                (read.epoch, read.newest, kept, same)
            }
            None => {
                let history = self.history_of(channel).ok_or_else(not_kept)?;
                let ring = history.lock();
                let same = since.as_ref().is_none_or(|since| *since.epoch == *ring.epoch());
                let kept = ring
                    .kept_after(0)
                    .into_iter()
                    .filter_map(|(offset, object)| {
                        Some((offset, RawValue::from_string(object.to_string()).ok()?))
                    })
                    .collect::<Vec<_>>();
                (ring.epoch().to_owned(), ring.newest().offset, kept, same)
            }
        };
        // A position of another epoch reads from the start (and is not complete).
        let from = since
            .as_ref()
            .filter(|_| same_epoch)
            .map_or(0, |since| since.offset);
        let mut kept = kept.into_iter().filter(|(offset, _)| *offset > from).peekable();
        let first = kept.peek().map_or(newest + 1, |(offset, _)| *offset);
        let complete = same_epoch && first == from + 1 && from <= newest;
        let messages = kept
            .take(limit)
            .map(|(offset, message)| HistoryEntry { offset, message })
            .collect();
        Ok(HistoryPage {
            epoch,
            newest,
            complete,
            messages,
        })
    }
}
