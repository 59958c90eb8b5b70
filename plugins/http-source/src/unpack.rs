//! Unpacking a downloaded archive into the destination, refusing anything that could land
//! outside it or exhaust the disk: every entry is checked before the first byte is written.
//! Refused: absolute paths, `..`, backslashes, symlinks, hard links, devices and FIFOs; more
//! entries or more unpacked bytes than the limits allow.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::index::Format;

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_bytes: u64,
    pub max_files: u64,
}

/// What unpacking wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Unpacked {
    pub files: u64,
    pub bytes: u64,
}

/// One entry of an archive, as the checks see it.
enum Kind {
    File(u64),
    Dir,
}

/// Unpacks `archive` (of `format`, not [`Format::File`]) into `dest`.
pub(crate) fn unpack(
    format: Format,
    archive: &Path,
    dest: &Path,
    limits: Limits,
) -> Result<Unpacked, String> {
    match format {
        Format::TarGz | Format::Tar => {
            let open = || -> io::Result<tar::Archive<Box<dyn Read>>> {
                let file = File::open(archive)?;
                let reader: Box<dyn Read> = match format {
                    Format::TarGz => Box::new(flate2::read::GzDecoder::new(file)),
                    _ => Box::new(file),
                };
                Ok(tar::Archive::new(reader))
            };
            let mut plan = Plan::new(limits);
            let mut tar = open().map_err(read_error)?;
            for entry in tar.entries().map_err(read_error)? {
                let entry = entry.map_err(read_error)?;
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                plan.check(&name, tar_kind(&entry, &name)?)?;
            }
            let mut tar = open().map_err(read_error)?;
            let mut out = Unpacked::default();
            for entry in tar.entries().map_err(read_error)? {
                let mut entry = entry.map_err(read_error)?;
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let kind = tar_kind(&entry, &name)?;
                write_entry(dest, &name, kind, &mut entry, &mut out)?;
            }
            Ok(out)
        }
        Format::Zip => {
            let file = File::open(archive).map_err(read_error)?;
            let mut zip =
                zip::ZipArchive::new(file).map_err(|e| format!("not a valid zip archive: {e}"))?;
            let mut plan = Plan::new(limits);
            let mut kinds = Vec::with_capacity(zip.len());
            for i in 0..zip.len() {
                let entry = zip
                    .by_index_raw(i)
                    .map_err(|e| format!("zip entry {i}: {e}"))?;
                let name = entry
                    .name()
                    .map_err(|e| format!("zip entry {i} has a name that cannot be read: {e}"))?
                    .into_owned();
                let kind = zip_kind(entry.unix_mode(), entry.is_dir(), entry.size(), &name)?;
                plan.check(&name, kind_copy(&kind))?;
                kinds.push((name, kind));
            }
            let mut out = Unpacked::default();
            for (i, (name, kind)) in kinds.into_iter().enumerate() {
                let mut entry = zip
                    .by_index(i)
                    .map_err(|e| format!("zip entry `{name}`: {e}"))?;
                write_entry(dest, &name, kind, &mut entry, &mut out)?;
            }
            Ok(out)
        }
        Format::File => Err("a single file is not unpacked".to_owned()),
    }
}

fn kind_copy(kind: &Kind) -> Kind {
    match kind {
        Kind::File(size) => Kind::File(*size),
        Kind::Dir => Kind::Dir,
    }
}

fn read_error(e: io::Error) -> String {
    format!("cannot read the archive: {e}")
}

/// The checks of the first pass: paths, kinds and totals.
struct Plan {
    limits: Limits,
    files: u64,
    bytes: u64,
}

impl Plan {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            files: 0,
            bytes: 0,
        }
    }

    fn check(&mut self, name: &str, kind: Kind) -> Result<(), String> {
        safe_path(name)?;
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(format!(
                "the archive has more than {} entries (`max-files`)",
                self.limits.max_files
            ));
        }
        if let Kind::File(size) = kind {
            self.bytes = self.bytes.saturating_add(size);
            if self.bytes > self.limits.max_bytes {
                return Err(format!(
                    "the archive unpacks to more than {} bytes (`max-unpacked`)",
                    self.limits.max_bytes
                ));
            }
        }
        Ok(())
    }
}

/// `name` as a relative path that stays inside the destination.
fn safe_path(name: &str) -> Result<PathBuf, String> {
    let refuse = |why: &str| {
        Err(format!(
            "archive entry `{}` refused: {why}",
            name.escape_debug()
        ))
    };
    if name.contains('\\') || name.contains('\0') {
        return refuse("its name has a backslash or a NUL");
    }
    let mut path = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir => return refuse("it climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return refuse("its path is absolute"),
        }
    }
    if path.as_os_str().is_empty() {
        return refuse("its name is empty");
    }
    Ok(path)
}

fn tar_kind<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<Kind, String> {
    use tar::EntryType;
    let refuse = |what: &str| {
        Err(format!(
            "archive entry `{}` refused: it is a {what}",
            name.escape_debug()
        ))
    };
    match entry.header().entry_type() {
        EntryType::Regular | EntryType::Continuous => Ok(Kind::File(entry.size())),
        EntryType::Directory => Ok(Kind::Dir),
        EntryType::Symlink => refuse("symbolic link"),
        EntryType::Link => refuse("hard link"),
        EntryType::Char | EntryType::Block => refuse("device"),
        EntryType::Fifo => refuse("FIFO"),
        other => refuse(&format!("tar entry of type {:?}", other.as_byte() as char)),
    }
}

fn zip_kind(mode: Option<u32>, is_dir: bool, size: u64, name: &str) -> Result<Kind, String> {
    const TYPE: u32 = 0o170_000;
    let refuse = |what: &str| {
        Err(format!(
            "archive entry `{}` refused: it is a {what}",
            name.escape_debug()
        ))
    };
    match mode.map(|m| m & TYPE) {
        Some(0o120_000) => refuse("symbolic link"),
        Some(0o020_000 | 0o060_000) => refuse("device"),
        Some(0o010_000) => refuse("FIFO"),
        Some(0o140_000) => refuse("socket"),
        _ if is_dir => Ok(Kind::Dir),
        _ => Ok(Kind::File(size)),
    }
}

/// Writes one checked entry. A file's bytes are counted as they are written, so an entry that
/// holds more than it declared is refused, not trusted.
fn write_entry(
    dest: &Path,
    name: &str,
    kind: Kind,
    reader: &mut dyn Read,
    out: &mut Unpacked,
) -> Result<(), String> {
    let path = dest.join(safe_path(name)?);
    let failed = |e: io::Error| format!("cannot write `{name}`: {e}");
    match kind {
        Kind::Dir => fs::create_dir_all(&path).map_err(failed),
        Kind::File(size) => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(failed)?;
            }
            let mut file = File::create(&path).map_err(failed)?;
            // The first pass bounded the declared sizes; reading one byte past a declared size
            // tells an entry that lies.
            let written = io::copy(&mut reader.take(size + 1), &mut file)
                .map_err(|e| format!("cannot unpack `{name}`: {e}"))?;
            if written > size {
                return Err(format!(
                    "archive entry `{name}` holds more than the {size} bytes it declares"
                ));
            }
            out.files += 1;
            out.bytes += written;
            Ok(())
        }
    }
}
