// Helpers for writing Sluice plugins in JavaScript, built with jco componentize
// (componentize-js). Import this module from the plugin's logic; import `component.js` only from
// the file jco builds, which exports the plugin (see the scaffold `sluice plugin new --lang js`).
//
// Nothing here imports WIT, so the logic also runs under `node --test`: there, `log` writes to
// stderr and `files`, `env` and `http` use the host a test installs (`node-host.js`, or a fake
// of its own). Inside a component `component.js` installs the real host: the directories,
// environment variables and hosts the pipeline grants, and nothing else.

/** The plugin tried and failed: say what failed and why, in words the pipeline's owner can act on. */
export class Failed extends Error {
  constructor(message) {
    super(message);
    this.name = 'Failed';
  }
}

/** The configuration the pipeline gave the plugin is wrong: say which field and how to fix it. */
export class InvalidConfig extends Error {
  constructor(message) {
    super(message);
    this.name = 'InvalidConfig';
  }
}

let host = null;

/** Installs what `files`, `env`, `http` and `log` call: `component.js` and `node-host.js` do. */
export function installHost(h) {
  host = h;
}

function need(what) {
  if (host === null || typeof host[what] !== 'function') {
    throw new Failed(
      `${what} is not available here: inside a component import component.js; ` +
        'in a test, installHost(...) from node-host.js or a fake',
    );
  }
  return host[what];
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

function write(level, message, fields = {}) {
  const pairs = Object.entries(fields).map(([k, v]) => [k, String(v)]);
  if (host !== null && typeof host.log === 'function') {
    host.log(level, String(message), pairs);
  } else {
    const shown = pairs.map(([k, v]) => ` ${k}=${v}`).join('');
    console.error(`${level.toUpperCase()} ${message}${shown}`);
  }
}

/** The task's log: structured lines with key/value fields. */
export const log = Object.fromEntries(
  LEVELS.map((level) => [level, (message, fields) => write(level, message, fields)]),
);
/** Reports progress: `percent` from 0 to 100 and what is happening. */
log.progress = (percent, message) => {
  if (host !== null && typeof host.progress === 'function') {
    host.progress(Math.max(0, Math.min(100, Math.round(percent))), String(message));
  } else {
    write('info', `${percent}% ${message}`);
  }
};

/** Environment variables the pipeline grants the task (`grants.env`). */
export const env = {
  all: () => need('environment')(),
  get: (name, fallback = undefined) => {
    const value = need('environment')()[name];
    return value === undefined ? fallback : value;
  },
  require: (name) => {
    const value = env.get(name);
    if (value === undefined) {
      throw new Failed(
        `the environment variable \`${name}\` is not set for this task ` +
          `(grant it in the pipeline: grants.env = ["${name}"], and set it where the engine runs)`,
      );
    }
    return value;
  },
};

/** Files in the directories the pipeline grants (`grants.dirs`), at their guest paths. */
export const files = {
  readText: (path) => new TextDecoder().decode(files.readBytes(path)),
  readBytes: (path) => need('readFile')(path),
  writeText: (path, text) => files.writeBytes(path, new TextEncoder().encode(text)),
  writeBytes: (path, bytes) => need('writeFile')(path, bytes),
  /** The names in the directory `path`, sorted. */
  list: (path) => need('listDir')(path).sort(),
  /** True when `path` is a directory. */
  isDir: (path) => need('isDir')(path),
};

/**
 * A blocking HTTP client for the hosts the pipeline grants (`grants.hosts`):
 * `http.request({ method, url, headers, body, json })` returns `{ status, headers, body }` with
 * `text()` and `json()`; any other host is refused by the engine, saying which grant to add.
 */
export const http = {
  request: (options) => response(need('http')(options)),
  get: (url, options = {}) => http.request({ ...options, url, method: 'GET' }),
  post: (url, options = {}) => http.request({ ...options, url, method: 'POST' }),
};

function response(r) {
  return {
    ...r,
    ok: r.status >= 200 && r.status < 300,
    header: (name) => (r.headers.find(([k]) => k.toLowerCase() === name.toLowerCase()) ?? [])[1],
    text: () => new TextDecoder().decode(r.body),
    json: () => {
      try {
        return JSON.parse(new TextDecoder().decode(r.body));
      } catch (e) {
        throw new Failed(`the response body is not JSON: ${e.message}`);
      }
    },
  };
}

/** Typed access to the task's configuration, with errors that name the field. */
export class Config {
  constructor(table = {}, prefix = '') {
    if (table === null || typeof table !== 'object' || Array.isArray(table)) {
      throw new InvalidConfig(`${prefix || 'the configuration'} must be a table`);
    }
    this.table = table;
    this.prefix = prefix;
  }

  /** The configuration as the host hands it: JSON text (`null` when the task has none). */
  static fromJson(text) {
    return new Config(text ? (JSON.parse(text) ?? {}) : {});
  }

  has(key) {
    return Object.hasOwn(this.table, key);
  }

  string(key, fallback) {
    return this.#typed(key, fallback, 'a string', (v) => typeof v === 'string');
  }

  integer(key, fallback) {
    return this.#typed(key, fallback, 'an integer', (v) => Number.isInteger(v));
  }

  boolean(key, fallback) {
    return this.#typed(key, fallback, 'true or false', (v) => typeof v === 'boolean');
  }

  strings(key, fallback) {
    const ok = (v) => Array.isArray(v) && v.every((s) => typeof s === 'string');
    return this.#typed(key, fallback, 'a list of strings', ok);
  }

  table(key, fallback) {
    const value = this.#typed(key, fallback ?? {}, 'a table', (v) => v && typeof v === 'object' && !Array.isArray(v));
    return new Config(value, this.#name(key));
  }

  /** Throws `InvalidConfig` for the first key not in `known`. */
  rejectUnknown(...known) {
    for (const key of Object.keys(this.table)) {
      if (!known.includes(key)) {
        const expected = known.map((k) => `\`${k}\``).join(', ') || 'none';
        throw new InvalidConfig(`unknown field \`${this.#name(key)}\` (expected: ${expected})`);
      }
    }
  }

  #name(key) {
    return this.prefix ? `${this.prefix}.${key}` : key;
  }

  #typed(key, fallback, expected, check) {
    if (!this.has(key)) {
      if (fallback === undefined) throw new InvalidConfig(`missing field \`${this.#name(key)}\``);
      return fallback;
    }
    const value = this.table[key];
    if (!check(value)) {
      throw new InvalidConfig(
        `field \`${this.#name(key)}\` must be ${expected}, not ${kind(value)} (${JSON.stringify(value)})`,
      );
    }
    return value;
  }
}

function kind(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a table';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  return `a ${typeof value}`;
}

/** The variables in scope. Secret values are clear here: use them, never log or return them. */
export class Variables {
  constructor(list = []) {
    this.values = new Map(list.map((v) => [v.name, v]));
  }

  /** Variables for a test: plain values and secret ones. */
  static of(values = {}, secrets = {}) {
    const plain = Object.entries(values).map(([name, value]) => ({ name, value, secret: false }));
    const hidden = Object.entries(secrets).map(([name, value]) => ({ name, value, secret: true }));
    return new Variables([...plain, ...hidden]);
  }

  get(name, fallback = undefined) {
    return this.values.get(name)?.value ?? fallback;
  }

  require(name) {
    const found = this.values.get(name);
    if (found === undefined) throw new InvalidConfig(`the variable \`${name}\` is not set for this stage`);
    return found.value;
  }

  has(name) {
    return this.values.has(name);
  }

  isSecret(name) {
    return this.values.get(name)?.secret === true;
  }
}

/** What a successful task reports: warnings and output variables for later tasks and stages. */
export class Report {
  constructor() {
    this.warnings = [];
    this.outputs = [];
  }

  warn(warning) {
    this.warnings.push(String(warning));
    return this;
  }

  output(name, value) {
    this.outputs.push({ name, value: String(value), secret: false });
    return this;
  }

  /** An output the engine stores sealed and masks in every log. */
  secretOutput(name, value) {
    this.outputs.push({ name, value: String(value), secret: true });
    return this;
  }

  outputValue(name) {
    return this.outputs.find((o) => o.name === name)?.value;
  }
}

/** A gate's answer: the condition holds. */
export const healthy = () => ({ healthy: true });
/** A gate's answer: the condition does not hold (yet), and why. */
export const unhealthy = (reason) => ({ healthy: false, reason: String(reason) });

/** An input for a test of the plugin's logic: `config` as the pipeline would write it. */
export function testInput({ config = {}, variables = {}, secrets = {}, ...context } = {}) {
  return {
    config: new Config(JSON.parse(JSON.stringify(config))),
    context: {
      pipeline: 'example',
      release: 'example-1',
      releaseNumber: 1n,
      stage: 'dev',
      attempt: 1,
      artifacts: [],
      workspace: undefined,
      ...context,
    },
    variables: Variables.of(variables, secrets),
  };
}

/**
 * An error's type, text and the plugin's own frame: `TypeError: x is undefined (at task.js:12)`.
 * The own frame is the first one outside the helpers (`sluice/`) and componentize-js's
 * generated bindings (`sources/initializer.js`), by directory: a plugin file may be called
 * `index.js` too.
 */
export function describe(error) {
  if (!(error instanceof Error)) {
    return `the plugin threw ${typeof error === 'string' ? JSON.stringify(error) : String(error)}`;
  }
  const helper = (path, file) =>
    /(^|\/)sluice\/[^/]+$/.test(path) || /(^|\/)sources\/initializer\.js$/.test(path) || file.startsWith('sluice-');
  const own = (error.stack ?? '')
    .split('\n')
    .map((line) => /((?:[^\s()@]*\/)?([^/\s()@]+\.[cm]?js)):(\d+)/.exec(line))
    .find((m) => m && !helper(m[1], m[2]));
  const where = own ? ` (at ${own[2]}:${own[3]})` : '';
  return `${error.name}: ${error.message}${where}`;
}
