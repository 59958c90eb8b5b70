//! A release's logs as one `.tar.gz`, and the `Content-Disposition` it is sent with.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::types::{LogLine, Name};

/// `attachment; filename="RELEASE-logs.tar.gz"` — the file named only from a release id that
/// is a [`Name`] (else `release-logs.tar.gz`), and quoted as RFC 9110 quotes anyway: no `"`,
/// `\`, CR, LF or other control character reaches the header from a name.
pub(super) fn disposition(release: &str) -> String {
    let file = match Name::new(release) {
        Ok(name) => format!("{name}-logs.tar.gz"),
        Err(_) => "release-logs.tar.gz".to_owned(),
    };
    let mut quoted = String::with_capacity(file.len() + 2);
    for c in file.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("attachment; filename=\"{quoted}\"")
}

/// `RELEASE/STAGE/ATTEMPT/TASK.log` for each stored log (keyed `STAGE/ATTEMPT/TASK`), each line
/// as `sluice logs` prints it.
pub(super) fn logs(release: &str, logs: &[(String, Vec<LogLine>)]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let now = crate::store::now_ms() / 1000;
    for (key, lines) in logs {
        let mut text = Vec::new();
        for line in lines {
            writeln!(text, "{line}")?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(now);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{release}/{key}.log"), text.as_slice())?;
    }
    tar.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::disposition;

    #[test]
    fn the_disposition_names_only_a_valid_release_id() {
        assert_eq!(
            disposition("web-12"),
            "attachment; filename=\"web-12-logs.tar.gz\""
        );
        for id in [
            "x\"; filename=\"evil.sh",
            "a\r\nSet-Cookie: s=1",
            "../../x",
            "a\\b",
        ] {
            let value = disposition(id);
            assert_eq!(
                value, "attachment; filename=\"release-logs.tar.gz\"",
                "{id:?}"
            );
            assert!(axum::http::HeaderValue::from_str(&value).is_ok());
        }
    }
}
