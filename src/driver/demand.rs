//! [`Demand`]: how a paced command hands bulk data to the driver only when it may go.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Paced, how a command with bulk data to send (a forward) hands it over without queueing it:
/// it [offers](Demand::offer), the driver [asks](Demand::ask) for as many messages as it may
/// send right now, and only then does the command choose whose bytes those are, so a keystroke
/// that arrives meanwhile goes first instead of waiting behind data the driver merely holds.
/// The messages a wake-up of the pacer allows arrive together and leave in one write.
#[derive(Debug, Default)]
pub struct Demand {
    /// Messages the driver asked for and the command has not handed over yet.
    want: AtomicUsize,
    /// How many messages' worth of data the command has waiting (0: none).
    offered: AtomicUsize,
    /// Wakes the command when the driver asks.
    to_command: Notify,
    /// Wakes the driver when the command offers.
    pub(super) to_driver: Notify,
}

impl Demand {
    /// Command: `messages` messages' worth of data wait to be asked for (the pacer lets a
    /// short write go at once when all of it fits in its tokens, a long one in whole batches).
    pub fn offer(&self, messages: usize) {
        if self.offered.swap(messages.max(1), Ordering::AcqRel) == 0 {
            self.to_driver.notify_one();
        }
    }

    /// Command: nothing waits any more (a request not yet answered lapses).
    pub fn withdraw(&self) {
        self.offered.store(0, Ordering::Release);
        self.want.store(0, Ordering::Release);
    }

    /// Command: waits until the driver asks; how many messages it wants now.
    pub async fn wanted(&self) -> usize {
        loop {
            let n = self.want.swap(0, Ordering::AcqRel);
            if n > 0 {
                return n;
            }
            self.to_command.notified().await;
        }
    }

    /// Driver: asks for `n` messages, unless a request is still open.
    pub fn ask(&self, n: usize) {
        if n > 0
            && self
                .want
                .compare_exchange(0, n, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.to_command.notify_one();
        }
    }

    pub(super) fn offered(&self) -> usize {
        self.offered.load(Ordering::Acquire)
    }
}
