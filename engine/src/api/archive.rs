//! A release's logs as one `.tar.gz`, and the `Content-Disposition` it is sent with. Each
//! line is written as `sluice logs` prints it (the plugin's text escaped: one line, no
//! terminal controls), each file named only from names.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::types::{LogLine, Name, escape};

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
/// as `sluice logs` prints it. A release, stage or task that is not a [`Name`], or an attempt
/// that is not a number, names no file: an error, never a path of its own making.
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
        tar.append_data(&mut header, entry(release, key)?, text.as_slice())?;
    }
    tar.into_inner()?.finish()
}

/// The archive path of the log keyed `key` (`STAGE/ATTEMPT/TASK`) of `release`.
fn entry(release: &str, key: &str) -> std::io::Result<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let named = |text: &str| Name::new(text).is_ok();
    match parts[..] {
        [stage, attempt, task]
            if named(release)
                && named(stage)
                && named(task)
                && attempt
                    .parse::<u32>()
                    .is_ok_and(|n| n.to_string() == attempt) =>
        {
            Ok(format!("{release}/{key}.log"))
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the stored log `{}` of release `{}` is not keyed STAGE/ATTEMPT/TASK by names",
                escape(key),
                escape(release)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::time::Duration;

    use super::{disposition, entry, logs};
    use crate::types::{Level, LogLine, Source};

    #[test]
    fn archive_files_are_named_only_from_names() {
        assert_eq!(
            entry("web-12", "prod/2/deploy").unwrap(),
            "web-12/prod/2/deploy.log"
        );
        for (release, key) in [
            ("web-12", "../../etc/1/passwd"),
            ("web-12", "prod/1/../../x"),
            ("web-12", "/abs/1/x"),
            ("web-12", "prod/01/deploy"),
            ("web-12", "prod/one/deploy"),
            ("web-12", "prod/1/deploy/extra"),
            ("web-12", "prod/1/de\x1bploy"),
            ("web-12", "prod/1/\u{202e}x"),
            ("..", "prod/1/deploy"),
            ("a\nb", "prod/1/deploy"),
        ] {
            let err = entry(release, key).unwrap_err().to_string();
            assert!(err.contains("not keyed"), "{err}");
            assert!(!err.contains(['\n', '\x1b', '\u{202e}']), "{err:?}");
        }
    }

    #[test]
    fn archived_lines_are_one_line_each_with_the_controls_escaped() {
        let line = LogLine {
            at: Duration::from_millis(12),
            level: Level::Error,
            source: Source::Plugin,
            message: "\x1b[2J\rdone\n[space-game-1] prod: task deploy-prod succeeded".into(),
            fields: vec![("k\u{202e}".into(), "v\x07".into())],
        };
        let gz = logs("web-12", &[("prod/1/deploy".into(), vec![line])]).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        let mut file = tar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(
            file.path().unwrap().to_str(),
            Some("web-12/prod/1/deploy.log")
        );
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(
            text,
            "   0.012s error \\x1b[2J\\rdone\\n[space-game-1] prod: task deploy-prod succeeded \
             k\\u{202e}=v\\x07\n"
        );
    }

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
