// A host for running a plugin's logic under `node --test`: files from this machine's disk,
// variables from `process.env`, no network (a test that needs HTTP installs a fake instead:
// `installHost({ ...nodeHost, http: (request) => ({ status: 200, headers: [], body }) })`).
// Never imported by the component: jco would bundle node:fs, which the engine refuses.

import { readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { Failed, installHost } from './index.js';

export const nodeHost = {
  log: (level, message, fields) => {
    const shown = fields.map(([k, v]) => ` ${k}=${v}`).join('');
    process.stderr.write(`${level.toUpperCase()} ${message}${shown}\n`);
  },
  progress: (percent, message) => process.stderr.write(`PROGRESS ${percent}% ${message}\n`),
  environment: () => ({ ...process.env }),
  readFile: (path) => new Uint8Array(readFileSync(path)),
  writeFile: (path, bytes) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, bytes);
  },
  listDir: (path) => readdirSync(path),
  isDir: (path) => {
    try {
      return statSync(path).isDirectory();
    } catch {
      return false;
    }
  },
  http: ({ url }) => {
    throw new Failed(`no network in tests: install a fake http host for ${url}`);
  },
};

installHost(nodeHost);
