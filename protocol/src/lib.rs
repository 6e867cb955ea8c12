//! Sans-IO implementation of the AWS Session Manager data-channel protocol.
//!
//! (crate docs are written as the modules land)

pub mod crypto;
pub mod message;
pub mod payload;
pub mod smux;

/// Which end of the data channel a state machine plays.
///
/// Both ends speak the same message format (PROTOCOL.md §2) but differ in which message type they
/// send stream data with, what they encrypt and with which half of the KMS data key (§8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The session-manager-plugin side (rssm itself): sends `input_stream_data`.
    Client,
    /// The SSM agent side (the simulator): sends `output_stream_data`.
    Agent,
}
