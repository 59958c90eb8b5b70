//! `pre-approval` and `post-approval`: approvers, policy (`any`, `all`, `sequence`, `n-of-m`)
//! and timeout.

use toml::Spanned;

use super::Validator;
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;

impl Validator<'_> {
    pub(super) fn approval(&mut self, raw: &Spanned<RawApproval>) -> ApprovalSpec {
        let whole = raw.span();
        let raw = raw.get_ref();
        let span = raw.approvers.first().map(Spanned::span);
        if raw.approvers.is_empty() {
            self.error(
                Some(whole),
                "an approval lists no approvers".into(),
                Some("write `approvers = [\"alice\", \"group:release-managers\"]`"),
            );
        }
        for approver in &raw.approvers {
            let a = approver.get_ref();
            // Users and groups are names, as sluice.toml's users are (one rule).
            let name = a.strip_prefix("group:").unwrap_or(a);
            if let Err(e) = crate::types::Name::new(name) {
                self.error(
                    Some(approver.span()),
                    format!("invalid approver: {e}"),
                    Some("write a user name, or `group:NAME`"),
                );
            }
        }
        let count = raw.approvers.len() as u32;
        let policy = match raw
            .policy
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("any", _)) => ApprovalPolicy::Any,
            Some(("all", _)) => ApprovalPolicy::All,
            Some(("sequence", _)) => ApprovalPolicy::Sequence,
            Some(("n-of-m", span)) => match raw.required.as_ref().map(|r| (*r.get_ref(), r.span()))
            {
                Some((n, _)) if (1..=count).contains(&n) => ApprovalPolicy::AtLeast(n),
                Some((n, rspan)) => {
                    self.error(
                        Some(rspan),
                        format!(
                            "`required = {n}` but {count} approver{} listed",
                            if count == 1 { " is" } else { "s are" }
                        ),
                        Some("require between 1 and the number of approvers"),
                    );
                    ApprovalPolicy::Any
                }
                None => {
                    self.error(
                        Some(span),
                        "policy `n-of-m` needs `required = N`".into(),
                        None,
                    );
                    ApprovalPolicy::Any
                }
            },
            Some((other, span)) => {
                self.error(
                    Some(span),
                    format!("unknown approval policy `{other}`"),
                    Some("use `any`, `all`, `sequence` or `n-of-m` (with `required = N`)"),
                );
                ApprovalPolicy::Any
            }
        };
        if raw.required.is_some()
            && !matches!(policy, ApprovalPolicy::AtLeast(_))
            && raw.policy.as_ref().is_none_or(|p| p.get_ref() != "n-of-m")
        {
            self.error(
                raw.required.as_ref().map(Spanned::span).or(span),
                "`required` only applies to `policy = \"n-of-m\"`".into(),
                None,
            );
        }
        ApprovalSpec {
            approvers: raw.approvers.iter().map(|a| a.get_ref().clone()).collect(),
            policy,
            allow_release_creator: raw.allow_release_creator,
            skip_if_approved_in_previous_stage: raw.skip_if_approved_in_previous_stage,
            timeout: raw
                .timeout
                .as_ref()
                .and_then(|t| self.duration(t, "approval timeout")),
        }
    }
}
