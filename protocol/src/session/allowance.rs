//! Paced sending: how many new messages may go now, in batches per wake-up of the pacer
//! ([`crate::pacing`]).

use std::time::Instant;

use crate::pacing::Pacer;

use super::Session;

impl Session {
    /// While something interactive waits behind held-back data, the pacer wakes for every
    /// token instead of every [`SessionConfig::pacing_wake_batch`]: it goes within a token or two.
    pub fn set_hurried(&mut self, hurried: bool) {
        self.hurried = hurried;
    }

    /// How many new messages may go out at `now`, when pacing: a caller that holds data back
    /// until it can go takes this many messages' worth and sends them in one write. `None`
    /// when not pacing; 0 while publication is paused or the session is closed.
    pub fn send_allowance(&mut self, now: Instant) -> Option<usize> {
        self.now = self.now.max(now);
        self.pacer.as_ref()?;
        if self.closed || self.is_paused(now) {
            return Some(0);
        }
        self.pacer.as_mut().map(|p| p.available(now) as usize)
    }

    /// Paced, the messages' worth of data the caller has waiting beyond those it numbered with
    /// [`Session::send`] (it hands data over only as the pacer lets it go): whether all that
    /// waits fits in the tokens there are depends on it (see [`Session::batch_allowance`]).
    pub fn set_backlog(&mut self, messages: usize) {
        self.backlog = messages;
    }

    /// Paced, how many new messages to let go at `now`, in one write: none until the pacer has
    /// a whole wake-up's batch of tokens ([`SessionConfig::pacing_wake_batch`]), then as many as
    /// its tokens allow (calls at the same `now` go on with the batch opened then). Whatever
    /// wakes the caller in between (acks, input) would otherwise send the few tokens that
    /// trickled in since, in a write and a wake-up of their own, and the batches would shrink
    /// to that. No wait while hurried, or when all that waits (never-sent messages and the
    /// [backlog](Session::set_backlog)) fits in the tokens there are: a short write after a busy
    /// spell. `None` when not pacing; 0 while paused or closed.
    pub fn batch_allowance(&mut self, now: Instant) -> Option<usize> {
        let tokens = self.send_allowance(now)?;
        let opens = self.hurried || tokens >= self.batch_size() || tokens >= self.waiting();
        if tokens > 0 && opens {
            self.batch_open = Some(now);
        }
        Some(if self.batch_open == Some(now) {
            tokens
        } else {
            0
        })
    }

    /// New messages waiting to go: never sent, or still with the caller.
    pub(super) fn waiting(&self) -> usize {
        self.outgoing.unsent() + self.backlog
    }

    /// Tokens a paced wake-up waits for (the burst bounds it: the bucket holds no more).
    pub(super) fn batch_size(&self) -> usize {
        let burst = self.config.pacing_burst.max(1);
        self.config.pacing_wake_batch.clamp(1, burst) as usize
    }

    /// The current pacing rate in messages per second, when pacing.
    pub fn pacing_rate(&self) -> Option<f64> {
        self.pacer.as_ref().map(Pacer::rate)
    }

    /// Paced, when the pacer next lets new messages go (see [`Session::batch_allowance`]): when
    /// it has a batch of tokens, or enough for all that waits; the next token while hurried.
    /// `None` when not pacing, or while publication is paused.
    pub fn next_send_at(&self) -> Option<Instant> {
        let pacer = self.pacer.as_ref()?;
        if self.paused_until.is_some() || self.closed {
            return None;
        }
        let want = if self.hurried {
            1
        } else {
            self.batch_size().min(self.waiting().max(1))
        };
        Some(pacer.next_ready_for(self.now, want as u32))
    }
}
