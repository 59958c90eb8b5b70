//! Hostile actions against the host's own resources and the file system's special files:
//! wasi:http `fields` objects held by the host, and symbolic links made inside a grant.

use sluice_plugin_sdk::{Error, Report};

/// Creates `count` wasi:http `fields` objects and keeps them all, each padded with `bytes` of
/// header values (as far as the host lets a `fields` grow): memory the host holds for the
/// guest, outside the guest's linear memory.
pub fn fields(count: u64, bytes: usize) -> Result<Report, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        use wasip2::http::types::Fields;
        let value = vec![b'v'; 4096];
        let mut kept = Vec::new();
        for i in 0..count {
            let fields = Fields::new();
            let mut padded = 0;
            while padded < bytes {
                if fields.append(&format!("x-pad-{padded}"), &value).is_err() {
                    break;
                }
                padded += value.len();
            }
            kept.push(fields);
            if i % 1000 == 0 {
                sluice_plugin_sdk::log::debug(format!("{i} fields held"));
            }
        }
        Ok(Report::new().output("held", kept.len().to_string()))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (count, bytes);
        Err(Error::failed(
            "the testkit holds fields only as WebAssembly",
        ))
    }
}

/// Creates the symbolic link `link` -> `target` in the preopened directory `dir`.
pub fn symlink(dir: &str, target: &str, link: &str) -> Result<Report, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        let (descriptor, _) = wasip2::filesystem::preopens::get_directories()
            .into_iter()
            .find(|(_, path)| path == dir)
            .ok_or_else(|| Error::failed(format!("{dir} is not a granted directory")))?;
        descriptor
            .symlink_at(target, link)
            .map(|()| Report::new().output("linked", link))
            .map_err(|e| Error::failed(format!("cannot link {link} -> {target}: {e}")))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (dir, target, link);
        Err(Error::failed("the testkit links only as WebAssembly"))
    }
}
