//! Counters a [`crate::Session`] keeps, for status lines, logs at `-v` and benchmarks.

/// Totals since the session started. Payload byte counts are before encryption.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Websocket frames handed to the caller to send (acks included).
    pub frames_sent: u64,
    /// Websocket frames received.
    pub frames_received: u64,
    /// Stream messages accepted by `send`.
    pub messages_queued: u64,
    /// Stream payload bytes accepted by `send`.
    pub payload_bytes_sent: u64,
    /// Stream payload bytes delivered to the caller.
    pub payload_bytes_received: u64,
    /// Stream messages sent again because no ack came within the RTO.
    pub retransmissions: u64,
    /// Acknowledgements sent.
    pub acks_sent: u64,
    /// Acknowledgements received.
    pub acks_received: u64,
    /// Stream messages received more than once (each re-acknowledged).
    pub duplicates_received: u64,
    /// In-order messages refused because the consumer was not ready.
    pub not_ready_drops: u64,
    /// Out-of-order messages dropped because the reorder buffer was full.
    pub reorder_overflow_drops: u64,
    /// Frames that failed to decode or validate.
    pub invalid_frames: u64,
    /// Times the pacer slowed down (pause_publication, retransmission storm, RTT growth).
    pub pacing_decreases: u64,
}
