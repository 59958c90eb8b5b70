// Tests of the plugin's logic, in Node: `npm test` (no component needed).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import '../sluice/node-host.js';
import { healthy, testInput } from '../sluice/index.js';
import { check, evaluate } from './plugin.js';

test('healthy when the text is there', () => {
  assert.deepEqual(check('<h1>Version 1.2</h1>', 'Version 1.2'), healthy());
});

test('unhealthy says what is missing', () => {
  const health = check('<h1>Version 1.1</h1>', 'Version 1.2');
  assert.equal(health.healthy, false);
  assert.match(health.reason, /Version 1.2/);
});

test('reads the configured file', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'plugin-')), 'index.html');
  writeFileSync(file, 'Version 2');
  assert.deepEqual(evaluate(testInput({ config: { file, contains: 'Version 2' } })), healthy());
});
