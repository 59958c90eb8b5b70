"""{{name}}: a Sluice artifact source. Versions are the directories under `root` (a granted
directory, e.g. builds/1.0.0, builds/1.1.0); fetching a version copies its files."""

import os

import sluice_plugin as sluice


def newest_first(names):
    """The plugin's logic, kept free of I/O so that test_app.py can check it: version names,
    newest first (numeric parts compare as numbers, so 1.10.0 comes before 1.9.0)."""

    def key(name):
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.replace("-", ".").split(".")]

    return sorted(names, key=key, reverse=True)


def list_versions(config: sluice.Config):
    config.reject_unknown("root")
    root = config.string("root")
    try:
        names = [n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))]
    except OSError as e:
        raise sluice.Failed(f"cannot list {root}: {e.strerror} (is it granted to the source?)")
    return [sluice.Version(id=name) for name in newest_first(names)]


def fetch(config: sluice.Config, version: str, destination: str):
    root = config.string("root")
    if version not in [v.id for v in list_versions(config)]:
        raise sluice.Failed(f"there is no version {version!r} under {root}")
    source = os.path.join(root, version)
    count = 0
    for folder, _, names in os.walk(source):
        inside = os.path.relpath(folder, source)
        for name in names:
            relative = os.path.normpath(os.path.join(inside, name))
            data = sluice.files.read_bytes(os.path.join(source, relative))
            sluice.files.write_bytes(os.path.join(destination, relative), data)
            count += 1
    sluice.log.info(f"fetched {version}", files=count)
    return sluice.Version(id=version, metadata={"files": str(count)})


# componentize-py calls the class `ArtifactSource` of this module.
ArtifactSource = sluice.artifact_source(list_versions, fetch)
