// {{name}}: a Sluice gate. Healthy when a file in a granted directory contains a text, e.g. the
// version a deployment should have published.
import { files, healthy, unhealthy } from '../sluice/index.js';

/** The plugin's logic, kept free of I/O so that the test can check it. */
export function check(text, expected) {
  return text.includes(expected) ? healthy() : unhealthy(`the file does not contain "${expected}" yet`);
}

export function evaluate({ config }) {
  config.rejectUnknown('file', 'contains');
  return check(files.readText(config.string('file')), config.string('contains'));
}
