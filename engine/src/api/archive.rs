//! A release's logs as one `.tar.gz`.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::types::LogLine;

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
