// Tests of the plugin's logic, in Node: `npm test` (no component needed).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import '../sluice/node-host.js';
import { InvalidConfig, testInput } from '../sluice/index.js';
import { greeting, run } from './plugin.js';

test('greets by name, release and stage', () => {
  assert.equal(greeting('Ada', { release: 'web-7', stage: 'prod' }), 'Hello, Ada! (web-7 on prod)\n');
});

test('writes the file and hands its path on', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'plugin-')), 'greeting.txt');
  const report = run(testInput({ config: { name: 'Ada', file } }));
  assert.match(readFileSync(file, 'utf8'), /^Hello, Ada!/);
  assert.equal(report.outputValue('greeting-file'), file);
});

test('a missing field is named', () => {
  assert.throws(() => run(testInput({ config: { name: 'Ada' } })), InvalidConfig, /missing field `file`/);
});
