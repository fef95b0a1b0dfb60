//! The stand-alone server: the builder every app starts from, the accept loop with its
//! connection caps, direct upgrades and write deadline, and TLS.

pub(crate) mod builder;
pub(crate) mod direct_upgrade;
mod idle_after_answer;
pub(crate) mod serve;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod write_deadline;
