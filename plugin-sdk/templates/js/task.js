// {{name}}: a Sluice deployment task. It writes a greeting into a file in a granted directory
// and hands the file's path and the greeting to later tasks and stages.
import { Report, files, log } from '../sluice/index.js';

/** The plugin's logic, kept free of I/O so that the test can check it. */
export function greeting(name, context) {
  return `Hello, ${name}! (${context.release} on ${context.stage})\n`;
}

export function run({ config, context }) {
  config.rejectUnknown('name', 'file');
  const name = config.string('name');
  const file = config.string('file'); // a guest path inside a read-write grant, e.g. /out/greeting.txt

  const text = greeting(name, context);
  log.info(`writing greeting to ${file}`, { stage: context.stage });
  files.writeText(file, text);
  return new Report().output('greeting-file', file).output('greeting', text.trim());
}
