// Tests of the plugin's logic, in Node: `npm test` (no component needed).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import '../sluice/node-host.js';
import { Config } from '../sluice/index.js';
import { fetch, listVersions, newestFirst } from './plugin.js';

test('orders versions newest first, numerically', () => {
  assert.deepEqual(newestFirst(['1.9.0', '1.10.0', '0.2.0']), ['1.10.0', '1.9.0', '0.2.0']);
});

test('lists and fetches', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plugin-'));
  mkdirSync(join(dir, 'builds', '1.0.0'), { recursive: true });
  writeFileSync(join(dir, 'builds', '1.0.0', 'index.html'), 'one');
  const config = new Config({ root: join(dir, 'builds') });
  assert.deepEqual(listVersions(config), [{ id: '1.0.0' }]);
  const fetched = fetch(config, '1.0.0', join(dir, 'out'));
  assert.equal(readFileSync(join(dir, 'out', 'index.html'), 'utf8'), 'one');
  assert.deepEqual(fetched.metadata, { files: '1' });
});
