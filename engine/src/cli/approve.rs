//! Local approvals: how a release driven in this process decides them, with `--approve all` or
//! by asking on the terminal (the live view cleared while asking).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use sluice::core::{ApprovalKind, Release};
use sluice::scheduler::Approvals;

use super::live::Live;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ApproveMode {
    /// Approve every approval as it comes up.
    All,
    /// Ask on the terminal (when there is one); otherwise leave approvals pending.
    Ask,
}

/// Decides approvals for the local operator.
pub(super) struct LocalApprovals {
    mode: ApproveMode,
    /// One prompt at a time on the terminal.
    prompt: Mutex<()>,
    /// The live view to clear while prompting, on a terminal.
    live: Option<Arc<Live>>,
}

impl LocalApprovals {
    pub(super) fn new(mode: ApproveMode, live: Option<Arc<Live>>) -> Arc<Self> {
        Arc::new(Self {
            mode,
            prompt: Mutex::new(()),
            live,
        })
    }
}

impl Approvals for LocalApprovals {
    fn decide(&self, release: &Release, stage: &str, kind: ApprovalKind) -> Option<(bool, String)> {
        let what = match kind {
            ApprovalKind::Pre => "pre-deployment",
            ApprovalKind::Post => "post-deployment",
        };
        match self.mode {
            ApproveMode::All => Some((true, "approved with --approve all".into())),
            ApproveMode::Ask if std::io::stdin().is_terminal() => {
                let _one_at_a_time = self.prompt.lock().unwrap_or_else(|e| e.into_inner());
                let ask = || loop {
                    print!(
                        "{} {stage}: {what} approval — approve? [y]es / [n]o / [l]ater: ",
                        release.name
                    );
                    let _ = std::io::stdout().flush();
                    let mut answer = String::new();
                    if std::io::stdin().lock().read_line(&mut answer).ok()? == 0 {
                        return None;
                    }
                    let approve = match answer.trim() {
                        "y" | "yes" => true,
                        "n" | "no" => false,
                        "l" | "later" => return None,
                        _ => continue,
                    };
                    print!("comment: ");
                    let _ = std::io::stdout().flush();
                    let mut comment = String::new();
                    let _ = std::io::stdin().lock().read_line(&mut comment);
                    return Some((approve, comment.trim().to_owned()));
                };
                match &self.live {
                    Some(live) => live.suspend(ask),
                    None => ask(),
                }
            }
            ApproveMode::Ask => {
                println!(
                    "[{}] {stage}: waiting for {what} approval (decide with `sluice resume --approve all`)",
                    release.name
                );
                None
            }
        }
    }
}
