//! What a serving loop (multiplexed or basic) gets of its session: the [`Link`] to the driver,
//! and the [`Stop`] it returns.

use std::future::Future;

use tokio::sync::{mpsc, watch, Notify};

use crate::driver::{End, Input, Output, Outputs};

/// Why a forward's serving loop returned.
#[derive(Debug)]
pub enum Stop {
    /// The user asked to stop (Ctrl-C).
    Shutdown,
    /// The session ended on its own.
    Ended(End),
    /// The forward broke (e.g. a corrupt smux stream).
    Failed(String),
}

/// A source of the driver's reports: the driver's [`Outputs`], or a plain channel in tests.
pub trait Reports: Send {
    /// The next report; `None` once the driver is gone.
    fn recv(&mut self) -> impl Future<Output = Option<Output>> + Send;
}

impl Reports for Outputs {
    fn recv(&mut self) -> impl Future<Output = Option<Output>> + Send {
        Outputs::recv(self)
    }
}

impl Reports for mpsc::Receiver<Output> {
    fn recv(&mut self) -> impl Future<Output = Option<Output>> + Send {
        mpsc::Receiver::recv(self)
    }
}

/// The running session as a serving loop uses it, plus the stop signal.
pub struct Link<'a, R: Reports> {
    /// Requests to the session driver.
    pub input: &'a mpsc::Sender<Input>,
    /// Reports from the session driver.
    pub output: &'a mut R,
    /// Becomes `true` when the user stops the command.
    pub shutdown: &'a mut watch::Receiver<bool>,
    /// Tells the driver that something interactive waits (see [`crate::driver::DriverHandle::hurry`]).
    pub hurry: Option<&'a Notify>,
    /// Paced, how data is handed to the driver (see [`crate::driver::Demand`]); without it, data
    /// is pushed.
    pub demand: Option<&'a crate::driver::Demand>,
}
