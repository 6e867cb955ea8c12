//! The two kinds of session `rssm cp` runs its scripts in.
//!
//! - [`Remote::exec`]: AWS-StartNonInteractiveCommand with `separateOutputStream=true`. Its
//!   stdout comes back byte for byte (file data, downloads), stderr carries the reports, and it
//!   ends with an exit code. It takes no input (PROTOCOL.md §9.3).
//! - [`Remote::pty`]: AWS-StartInteractiveCommand, the one session type whose input reaches the
//!   command (through a terminal, PROTOCOL.md §9.2): uploads. The script puts the terminal in raw
//!   mode without echo and reports `ready` before a byte is sent, and the bytes are base64, so
//!   nothing in them is a control character either way.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::Bytes;

use crate::aws::Aws;
use crate::cli::SessionArgs;
use crate::commands::exec::trailer::{Ending, Trailer, Unwrapper};
use crate::commands::{connect, Connected};
use crate::driver::{DriverConfig, End, Input, Output};

use super::error::CpError;
use super::remote::{Report, Reports, Script};

/// How long a non-interactive command may stay silent after its session resumed before the
/// session counts as lost.
const STALL_AFTER_RESUME: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a session may take to close its websocket when asked to.
const FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The document for uploads: a command on a PTY, whose input reaches it.
const PTY_DOCUMENT: &str = "AWS-StartInteractiveCommand";

/// Where the scripts run, and the sessions open there now (ended on the service when the copy
/// is interrupted).
#[derive(Clone)]
pub struct Remote {
    aws: Aws,
    config: DriverConfig,
    target: String,
    reason: Option<String>,
    live: Arc<Mutex<HashSet<String>>>,
    /// Temporary files of uploads under way, removed when one fails or is interrupted.
    tmps: Arc<Mutex<Vec<String>>>,
}

/// What a non-interactive script left behind.
#[derive(Debug)]
pub struct Ran {
    /// Its exit status, when the agent sent it.
    pub exit_code: Option<i32>,
    /// Its reports, in order.
    pub reports: Vec<Report>,
    /// Its other stderr text (a tool's message).
    pub stderr: Reports,
    /// Whether stdout arrived whole (its trailer came).
    pub stdout_whole: bool,
    /// Why the session ended early, when it did.
    pub lost: Option<String>,
}

impl Ran {
    /// The first report of a kind.
    pub fn report(&self, kind: &str) -> Option<&Report> {
        self.reports.iter().find(|r| r.kind() == kind)
    }

    /// The script's failure as an error, when it failed; a lost session is
    /// [`CpError::Lost`].
    pub fn failure(&self, path: &str) -> Option<CpError> {
        if let Some(e) = self
            .reports
            .iter()
            .find_map(|r| CpError::from_report(r, path))
        {
            return Some(e);
        }
        match (self.exit_code, &self.lost) {
            (Some(0), _) if self.stdout_whole => None,
            (Some(code), _) if code != 0 => Some(CpError::from_message(
                path,
                self.stderr.last_message(),
                code,
            )),
            (_, Some(why)) => Some(CpError::Lost(why.clone())),
            _ => Some(CpError::Lost(
                "the session ended before the command's output arrived in full".into(),
            )),
        }
    }
}

impl Remote {
    /// Scripts for `target` (an instance id), in sessions made with `config`.
    pub fn new(aws: &Aws, config: DriverConfig, target: &str, reason: Option<String>) -> Remote {
        Remote {
            aws: aws.clone(),
            config,
            target: target.to_owned(),
            reason,
            live: Arc::default(),
            tmps: Arc::default(),
        }
    }

    /// Remembers an upload's temporary file on the target.
    pub fn track_tmp(&self, path: &str) {
        let mut tmps = self.tmps.lock().expect("tmps");
        if !tmps.iter().any(|t| t == path) {
            tmps.push(path.to_owned());
        }
    }

    /// The temporary file took its final name.
    pub fn untrack_tmp(&self, path: &str) {
        self.tmps.lock().expect("tmps").retain(|t| t != path);
    }

    /// Every temporary file took its final name (or is gone).
    pub fn forget_tmps(&self) {
        self.tmps.lock().expect("tmps").clear();
    }

    /// Removes the temporary files of failed uploads on the target (best effort: each in a
    /// session of its own, which may fail too).
    pub async fn remove_tmps(&self) {
        let tmps: Vec<String> = std::mem::take(&mut *self.tmps.lock().expect("tmps"));
        for tmp in tmps {
            match self.exec(Script::Remove, &[&tmp], |_| Ok(())).await {
                Ok(ran) if ran.exit_code == Some(0) => {}
                _ => tracing::warn!("could not remove {tmp} on the target"),
            }
        }
    }

    /// Ends every session still open, on the service too (an interrupted copy).
    pub async fn terminate_all(&self) {
        let ids: Vec<String> = self.live.lock().expect("live sessions").drain().collect();
        let aws = &self.aws;
        futures_util::future::join_all(ids.iter().map(|id| aws.terminate_session(id))).await;
    }

    async fn start(&self, document: &str, command: String, separate: bool) -> Result<Connected> {
        let mut params = HashMap::from([("command".to_owned(), vec![command])]);
        if separate {
            params.insert("separateOutputStream".to_owned(), vec!["true".to_owned()]);
        }
        let args = SessionArgs {
            document: None,
            parameters: Vec::new(),
            reason: self.reason.clone(),
        };
        let conn = connect(
            &self.aws,
            self.config,
            &self.target,
            Some(document),
            params,
            &args,
        )
        .await?;
        self.live
            .lock()
            .expect("live sessions")
            .insert(conn.started.session_id.clone());
        Ok(conn)
    }

    /// Ends a session: its websocket closed by us first (the driver would take the service
    /// closing it for a lost connection and reconnect), then TerminateSession.
    async fn end(&self, conn: &mut Connected) {
        if conn.handle.input.send(Input::Finish).await.is_ok() {
            let ended = async {
                while let Some(o) = conn.handle.output.recv().await {
                    if matches!(o, Output::Ended(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(FINISH_WAIT, ended).await;
        }
        conn.terminate().await;
        self.live
            .lock()
            .expect("live sessions")
            .remove(&conn.started.session_id);
    }

    /// Runs `script` without a terminal; its stdout goes to `stdout` as it arrives (an error
    /// there ends the session and is returned).
    pub async fn exec(
        &self,
        script: Script,
        args: &[&str],
        mut stdout: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Ran> {
        let trailer = Trailer::random();
        let command = script.command(trailer.as_str(), args);
        let mut conn = self
            .start(crate::commands::exec::DOCUMENT, command, true)
            .await?;
        let mut out = Unwrapper::stdout(&trailer);
        let mut err = Unwrapper::stderr(&trailer);
        let mut stderr = Reports::default();
        let mut reports = Vec::new();
        let mut exit_code = None;
        // After a reconnect the agent's readers of the command's output may have stopped for
        // good (PROTOCOL.md §13.2): the command then blocks on a full pipe and the session
        // never ends. Silence that long after a resume counts as a lost session.
        let mut stall: Option<tokio::time::Instant> = None;
        let end = loop {
            let next = tokio::select! {
                o = conn.handle.output.recv() => o,
                () = crate::clock::sleep_until_opt(stall) => {
                    break End::Failed(format!(
                        "no output for {} s after the connection was resumed (the agent \
                         stops reading a command's output when its connection drops)",
                        STALL_AFTER_RESUME.as_secs()
                    ));
                }
            };
            if stall.is_some() {
                stall = Some(tokio::time::Instant::now() + STALL_AFTER_RESUME);
            }
            let step = match next {
                Some(Output::Data(b)) => stdout(&out.push(&b)),
                Some(Output::StdErr(b)) => {
                    reports.extend(stderr.push(&err.push(&b)));
                    Ok(())
                }
                Some(Output::ExitCode(c)) => {
                    // The agent sends the status once both pipes are read to their end, and
                    // the driver delivers in order: all the output is here. Waiting for the
                    // service to close the channel would only cost time.
                    exit_code = Some(c);
                    break End::Finished;
                }
                Some(Output::Resumed) if exit_code.is_none() => {
                    stall = Some(tokio::time::Instant::now() + STALL_AFTER_RESUME);
                    Ok(())
                }
                Some(Output::Ended(end)) => break end,
                Some(_) => Ok(()),
                None => break End::Failed("the session driver stopped".into()),
            };
            if let Err(e) = step {
                self.end(&mut conn).await;
                return Err(e);
            }
        };
        self.end(&mut conn).await;
        let (rest, stdout_end) = out.finish();
        let (err_rest, _) = err.finish();
        reports.extend(stderr.push(&err_rest));
        if stdout_end == Ending::Cut {
            // What a cut stream held back is output all the same (it is not the trailer).
            stdout(&rest)?;
        }
        let lost = match end {
            End::Failed(why) => Some(why),
            End::Closed { reason } if exit_code.is_none() && !reason.is_empty() => Some(reason),
            _ => None,
        };
        Ok(Ran {
            exit_code,
            reports,
            stderr,
            stdout_whole: stdout_end == (Ending::Whole { merged: false }),
            lost,
        })
    }

    /// Starts `script` on a terminal and waits for its `ready` report.
    pub async fn pty(&self, script: Script, args: &[&str], path: &str) -> Result<Pty> {
        let trailer = Trailer::random();
        let command = script.command(trailer.as_str(), args);
        let conn = self.start(PTY_DOCUMENT, command, false).await?;
        let mut pty = Pty {
            remote: self.clone(),
            conn,
            reports: Reports::default(),
            pending: VecDeque::new(),
            path: path.to_owned(),
            trailer,
        };
        let first = loop {
            match pty.next_report().await {
                Ok(r) if r.kind() == "tmp" => self.track_tmp(&r.rest()),
                other => break other,
            }
        };
        match first {
            Ok(r) if r.kind() == "ready" => Ok(pty),
            Ok(r) => {
                pty.close().await;
                Err(CpError::from_report(&r, path)
                    .unwrap_or_else(|| CpError::Protocol(format!("unexpected report {r:?}")))
                    .into())
            }
            Err(e) => {
                pty.close().await;
                Err(e.into())
            }
        }
    }
}

/// A script running on a terminal, ready for its input.
pub struct Pty {
    remote: Remote,
    conn: Connected,
    reports: Reports,
    /// Reports that arrived together with an earlier one.
    pending: VecDeque<Report>,
    path: String,
    /// The script's trailer: on a terminal it is just more text.
    trailer: Trailer,
}

impl Pty {
    /// Sends `data` (base64 text; at most 1024 bytes) as one message.
    pub async fn send(&mut self, data: Bytes) -> Result<(), CpError> {
        let input = self.conn.handle.input.clone();
        loop {
            tokio::select! {
                permit = input.reserve() => {
                    let permit = permit.map_err(|_| CpError::Lost("the session driver stopped".into()))?;
                    permit.send(Input::Data(data));
                    return Ok(());
                }
                // Meanwhile the script may fail (disk full) or the session end.
                o = self.conn.handle.output.recv() => {
                    if let Some(r) = self.take(o)? {
                        return Err(CpError::from_report(&r, &self.path)
                            .unwrap_or_else(|| CpError::Protocol(format!("unexpected report {r:?}"))));
                    }
                }
            }
        }
    }

    /// Waits for the script's next report.
    pub async fn next_report(&mut self) -> Result<Report, CpError> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(r);
        }
        loop {
            let o = self.conn.handle.output.recv().await;
            if let Some(r) = self.take(o)? {
                return Ok(r);
            }
        }
    }

    /// One output of the session: a report it completed, or the end as an error.
    fn take(&mut self, o: Option<Output>) -> Result<Option<Report>, CpError> {
        let path = self.path.clone();
        let trailer = self.trailer.as_str().to_owned();
        let ended = |reports: &Reports, why: String| {
            // A tool's message on the terminal says more than "the session ended".
            Err(match reports.last_message_except(&trailer) {
                Some(m) if why.is_empty() => CpError::from_message(&path, Some(m), 1),
                _ if why.is_empty() => {
                    CpError::Lost("the upload's session ended before it finished".into())
                }
                _ => CpError::Lost(why),
            })
        };
        match o {
            Some(Output::Data(b)) => {
                self.pending.extend(self.reports.push(&b));
                Ok(self.pending.pop_front())
            }
            Some(Output::Ended(End::Failed(why))) => ended(&self.reports, why),
            Some(Output::Ended(End::Closed { reason })) => ended(&self.reports, reason),
            Some(Output::Ended(End::Finished)) | None => ended(&self.reports, String::new()),
            Some(_) => Ok(None),
        }
    }

    /// Ends the session (on the service too).
    pub async fn close(mut self) {
        self.remote.end(&mut self.conn).await;
    }
}
