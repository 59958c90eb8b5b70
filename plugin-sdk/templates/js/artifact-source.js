// {{name}}: a Sluice artifact source. Versions are the directories under `root` (a granted
// directory, e.g. builds/1.0.0, builds/1.1.0); fetching a version copies its files.
import { Failed, files, log } from '../sluice/index.js';

/** The plugin's logic, kept free of I/O so that the test can check it: version names, newest
 * first (numeric parts compare as numbers, so 1.10.0 comes before 1.9.0). */
export function newestFirst(names) {
  const parts = (name) => name.split(/[.-]/).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  const compare = (a, b) => {
    const [x, y] = [parts(a), parts(b)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      if (x[i] === y[i]) continue;
      if (x[i] === undefined) return -1;
      if (y[i] === undefined) return 1;
      if (typeof x[i] !== typeof y[i]) return typeof x[i] === 'number' ? 1 : -1;
      return x[i] < y[i] ? -1 : 1;
    }
    return 0;
  };
  return [...names].sort((a, b) => compare(b, a));
}

export function listVersions(config) {
  config.rejectUnknown('root');
  const root = config.string('root');
  const names = files.list(root).filter((name) => files.isDir(`${root}/${name}`));
  return newestFirst(names).map((id) => ({ id }));
}

function copy(from, to) {
  let count = 0;
  for (const name of files.list(from)) {
    if (files.isDir(`${from}/${name}`)) {
      count += copy(`${from}/${name}`, `${to}/${name}`);
    } else {
      files.writeBytes(`${to}/${name}`, files.readBytes(`${from}/${name}`));
      count += 1;
    }
  }
  return count;
}

export function fetch(config, version, destination) {
  const root = config.string('root');
  if (!listVersions(config).some((v) => v.id === version)) {
    throw new Failed(`there is no version "${version}" under ${root}`);
  }
  const count = copy(`${root}/${version}`, destination);
  log.info(`fetched ${version}`, { files: count });
  return { id: version, metadata: { files: String(count) } };
}
