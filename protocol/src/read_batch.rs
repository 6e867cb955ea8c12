//! Reading the websocket less often than bulk messages arrive.
//!
//! Under the service's rate the agent sends a message a millisecond, each in a packet of its own,
//! and waking up for every one costs a context switch, an `epoll_wait` and a read per message,
//! far more than the message itself. While frames stream in steadily, the driver
//! raises the socket's receive low-water mark (`SO_RCVLOWAT`) to what arrives in [`MARK_SPAN`]
//! at the measured rate, so the kernel wakes it once per batch. The wait is bounded: when the
//! driver wakes for anything else, or [`MAX_WAIT`] after the last read, it lowers the mark, which
//! makes whatever is queued readable at once (Linux signals readiness from the `setsockopt`
//! itself), and reads that before it does anything else.
//!
//! An upload's acks need no wake-up of their own either: between two of the pacer's batches
//! the driver [holds](ReadBatcher::hold_until) the mark up, and the next batch's wake-up reads the
//! last one's acks (and any retransmission timer that falls due first reads them before it
//! decides anything).
//!
//! Waiting must never cost more than CPU. So the mark stays down:
//! - for [`INTERACTIVE_FOR`] after local input that looks typed (a keystroke, a terminal resize,
//!   a forward's interactive connection): its answer is read as soon as it arrives;
//! - while the peer waits for our acknowledgements (a gap is being repaired, or it sends no
//!   faster than it hears from us), since a late read would slow it to a message per wait;
//! - unless frames came at [`RATE_FRAMES`] per [`RATE_SPAN`] or faster over the last span.
//!
//! This type only decides; the driver applies the marks it returns.

use std::time::{Duration, Instant};

/// The mark is what arrives in this long at the measured rate: about 25 KB under the service's
/// rate, read in one wake-up instead of 25.
pub const MARK_SPAN: Duration = Duration::from_millis(25);
/// Longest a frame waits unread while batching, when fewer frames come than the mark expects,
/// and the longest an upload's acks are [held](ReadBatcher::hold_until).
pub const MAX_WAIT: Duration = Duration::from_millis(40);
/// Batching needs at least this many frames in a span of [`RATE_SPAN`] (500 a second).
pub const RATE_FRAMES: u32 = 16;
/// See [`RATE_FRAMES`].
pub const RATE_SPAN: Duration = Duration::from_millis(32);
/// The highest mark: at high rates a batch fills in well under [`MARK_SPAN`] anyway.
pub const MAX_MARK: u32 = 32 * 1024;
/// No batching for this long after interactive input.
pub const INTERACTIVE_FOR: Duration = Duration::from_secs(1);
/// Most websocket frames taken in one wake-up of the caller's loop (the rest wait for the next
/// turn), so that the loop's other work is done once per wake-up, not per frame, and never
/// waits behind an endless stream.
pub const FRAMES_PER_WAKE: usize = 64;
/// The low-water mark that reads every byte at once (the kernel's default).
pub const READ_AT_ONCE: u32 = 1;

/// See the module docs.
#[derive(Debug)]
pub struct ReadBatcher {
    /// The mark in force, as last returned.
    mark: u32,
    /// The mark to raise to after each read while frames come fast enough; `None` otherwise.
    target: Option<u32>,
    /// The span being measured: its first frame's time, frames and bytes.
    span: Option<(Instant, u32, u64)>,
    /// While the mark is raised: when to lower it.
    deadline: Option<Instant>,
    /// No batching until then.
    quiet_until: Option<Instant>,
}

impl Default for ReadBatcher {
    fn default() -> Self {
        ReadBatcher {
            mark: READ_AT_ONCE,
            target: None,
            span: None,
            deadline: None,
            quiet_until: None,
        }
    }
}

impl ReadBatcher {
    /// Whether the mark is raised, i.e. frames are read in batches.
    pub fn batching(&self) -> bool {
        self.mark > READ_AT_ONCE
    }

    /// When the raised mark must come down (call [`ReadBatcher::on_wake`] then).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A frame of `len` bytes was read at `now`; `peer_waits` is
    /// [`rssm_protocol::Session::peer_waits`] after it. Returns a new mark to set, if any.
    pub fn on_frame(&mut self, now: Instant, len: usize, peer_waits: bool) -> Option<u32> {
        self.measure(now, len as u64);
        if peer_waits || self.quiet(now) {
            self.forget_rate();
        }
        match self.target {
            Some(mark) => {
                self.deadline = Some(now + MAX_WAIT);
                self.set_mark(mark)
            }
            None => self.lower(),
        }
    }

    /// The driver woke for something other than a frame (a timer, local input): read what is
    /// queued now, while awake anyway. The next read raises the mark again.
    pub fn on_wake(&mut self) -> Option<u32> {
        self.lower()
    }

    /// The driver goes to sleep until `until`, the pacer's next batch of an upload, and nothing
    /// waits for what arrives before then (the acks of the batch just sent): read that when it
    /// wakes anyway, not in a wake-up of its own. Not while typing or while the peer waits for
    /// our acks, and not for longer than [`MAX_WAIT`].
    pub fn hold_until(&mut self, now: Instant, until: Instant, peer_waits: bool) -> Option<u32> {
        if peer_waits || self.quiet(now) || until > now + MAX_WAIT {
            return None;
        }
        self.deadline = Some(until);
        self.set_mark(MAX_MARK)
    }

    /// Input that looks typed went out: read at once for a while.
    pub fn on_interactive(&mut self, now: Instant) -> Option<u32> {
        self.quiet_until = Some(now + INTERACTIVE_FOR);
        self.forget_rate();
        self.lower()
    }

    /// A new socket (after a reconnect) starts with the kernel's default mark.
    pub fn reset(&mut self) {
        *self = ReadBatcher {
            quiet_until: self.quiet_until,
            ..ReadBatcher::default()
        };
    }

    /// Counts the frame into the current span; a span that lasted [`RATE_SPAN`] decides the
    /// target (a span that took longer, because frames stopped, measures a lower rate).
    fn measure(&mut self, now: Instant, len: u64) {
        let (start, frames, bytes) = self.span.get_or_insert((now, 0, 0));
        *frames += 1;
        *bytes += len;
        let took = now.saturating_duration_since(*start);
        if took < RATE_SPAN {
            return;
        }
        let per_span = u128::from(*bytes) * MARK_SPAN.as_nanos() / took.as_nanos();
        self.target = (*frames >= RATE_FRAMES * (took.as_nanos() / RATE_SPAN.as_nanos()) as u32)
            .then(|| per_span.clamp(1, u128::from(MAX_MARK)) as u32);
        self.span = None;
    }

    /// Whether typed input went out less than [`INTERACTIVE_FOR`] ago.
    fn quiet(&self, now: Instant) -> bool {
        self.quiet_until.is_some_and(|t| now < t)
    }

    /// Not bulk until a whole new span says so.
    fn forget_rate(&mut self) {
        self.target = None;
        self.span = None;
    }

    fn lower(&mut self) -> Option<u32> {
        self.deadline = None;
        self.set_mark(READ_AT_ONCE)
    }

    /// The mark to set, when it differs enough from the one in force (a quarter, so that a
    /// drifting rate does not cost a system call per read).
    fn set_mark(&mut self, mark: u32) -> Option<u32> {
        let differs = if mark == READ_AT_ONCE || self.mark == READ_AT_ONCE {
            mark != self.mark
        } else {
            mark.abs_diff(self.mark) > self.mark / 4
        };
        differs.then(|| {
            self.mark = mark;
            mark
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// A data message on the wire: 1024 bytes of payload and the 120-byte header (and 4 of
    /// stream-data length).
    const DATA: usize = 1148;

    /// Feeds `n` frames of `len` bytes one millisecond apart from `*now`; returns the marks set.
    fn stream(c: &mut ReadBatcher, now: &mut Instant, n: u32, len: usize) -> Vec<u32> {
        (0..n)
            .filter_map(|_| {
                *now += MS;
                c.on_frame(*now, len, false)
            })
            .collect()
    }

    /// What arrives in [`MARK_SPAN`] at a frame of `len` a millisecond.
    fn per_span(len: usize) -> u32 {
        (len as u128 * MARK_SPAN.as_nanos() / MS.as_nanos()) as u32
    }

    /// Within the quarter by which the mark may lag the rate (see `ReadBatcher::set_mark`).
    fn near(mark: u32, want: u32) -> bool {
        mark.abs_diff(want) <= want / 4
    }

    #[test]
    fn a_steady_stream_raises_the_mark_to_what_comes_in_the_span() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        // The first span measures; the first frame after it raises the mark.
        let marks = stream(&mut c, &mut now, 40, DATA);
        assert_eq!(marks.len(), 1, "{marks:?}");
        assert!(near(marks[0], per_span(DATA)), "{marks:?}");
        assert!(c.batching());
        // Frames keep coming: the mark stays, the deadline moves with each read.
        assert_eq!(stream(&mut c, &mut now, 200, DATA), Vec::<u32>::new());
        assert_eq!(c.deadline(), Some(now + MAX_WAIT));
    }

    #[test]
    fn a_slow_stream_never_batchs() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        for _ in 0..200 {
            now += 3 * MS;
            assert_eq!(c.on_frame(now, DATA, false), None);
        }
        assert!(!c.batching());
    }

    #[test]
    fn any_other_wake_up_reads_what_waits_and_the_next_read_raises_the_mark_again() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        let raised = stream(&mut c, &mut now, 40, DATA)[0];
        assert_eq!(c.on_wake(), Some(READ_AT_ONCE));
        assert_eq!(c.deadline(), None);
        assert_eq!(c.on_wake(), None, "already down");
        assert_eq!(stream(&mut c, &mut now, 1, DATA), vec![raised]);
    }

    #[test]
    fn a_stream_that_stops_is_read_at_once_when_it_resumes() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        stream(&mut c, &mut now, 40, DATA);
        // The deadline wakes the driver, which lowers the mark.
        assert_eq!(c.on_wake(), Some(READ_AT_ONCE));
        // Long after, one frame (an echo): read at once, and it does not raise the mark.
        now += Duration::from_millis(500);
        assert_eq!(c.on_frame(now, 100, false), None);
        assert_eq!(stream(&mut c, &mut now, 5, 100), Vec::<u32>::new());
        assert!(!c.batching());
    }

    #[test]
    fn a_waiting_peer_is_read_at_once() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        stream(&mut c, &mut now, 40, DATA);
        now += MS;
        assert_eq!(c.on_frame(now, DATA, true), Some(READ_AT_ONCE));
        // A repair at one message a round trip (fast on loopback) never turns it on.
        for _ in 0..1000 {
            now += MS / 10;
            assert_eq!(c.on_frame(now, DATA, true), None);
        }
        assert!(!c.batching());
        // Once the repair is done, a full span at the bulk rate raises it again.
        assert_eq!(stream(&mut c, &mut now, 40, DATA).len(), 1);
    }

    #[test]
    fn typed_input_stops_batching_for_a_while() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        stream(&mut c, &mut now, 40, DATA);
        assert_eq!(c.on_interactive(now), Some(READ_AT_ONCE));
        assert_eq!(c.on_interactive(now), None, "already down");
        let quiet_end = now + INTERACTIVE_FOR;
        while now + MS < quiet_end {
            now += MS;
            assert_eq!(c.on_frame(now, DATA, false), None);
        }
        assert_eq!(stream(&mut c, &mut now, 40, DATA).len(), 1);
        assert!(c.batching());
    }

    #[test]
    fn the_mark_follows_the_rate_in_steps() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        // Acks of an upload: small frames, a small mark, above the eight of a pacer's batch.
        let marks = stream(&mut c, &mut now, 40, 260);
        assert!(near(marks[0], per_span(260)), "{marks:?}");
        assert!(marks[0] > 8 * 260);
        // Data frames take over: the mark grows in a few steps, not a system call a frame.
        let marks = stream(&mut c, &mut now, 200, DATA);
        assert!((1..=4).contains(&marks.len()), "{marks:?}");
        assert!(near(*marks.last().unwrap(), per_span(DATA)), "{marks:?}");
        // Very fast streams are capped.
        for _ in 0..10_000 {
            now += MS / 100;
            c.on_frame(now, DATA, false);
        }
        assert!(c.batching());
        assert_eq!(c.on_wake(), Some(READ_AT_ONCE));
        assert_eq!(c.on_frame(now, DATA, false), Some(MAX_MARK));
    }

    #[test]
    fn an_upload_reads_its_acks_at_the_pacers_next_batch() {
        let mut c = ReadBatcher::default();
        let now = Instant::now();
        let batch = now + 25 * MS;
        // Asleep until the next batch: its acks wait for it, however few they are.
        assert_eq!(c.hold_until(now, batch, false), Some(MAX_MARK));
        assert_eq!(c.deadline(), Some(batch));
        assert!(c.batching());
        // That wake-up reads them.
        assert_eq!(c.on_wake(), Some(READ_AT_ONCE));
        // Not while the peer waits for our acks, nor beyond the longest wait.
        assert_eq!(c.hold_until(now, batch, true), None);
        assert_eq!(c.hold_until(now, now + MAX_WAIT + MS, false), None);
        assert!(!c.batching());
        // Nor while typing.
        c.on_interactive(now);
        assert_eq!(c.hold_until(now + MS, batch, false), None);
        assert_eq!(
            c.hold_until(now + INTERACTIVE_FOR, batch + INTERACTIVE_FOR, false),
            Some(MAX_MARK)
        );
    }

    #[test]
    fn a_new_socket_starts_at_once_but_remembers_typing() {
        let mut c = ReadBatcher::default();
        let mut now = Instant::now();
        stream(&mut c, &mut now, 40, DATA);
        c.reset();
        assert!(!c.batching());
        assert_eq!(stream(&mut c, &mut now, 40, DATA).len(), 1);
        c.on_interactive(now);
        c.reset();
        assert_eq!(stream(&mut c, &mut now, 40, DATA), Vec::<u32>::new());
    }
}
