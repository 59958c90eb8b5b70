// The component side of the Sluice JS helpers: the host that `index.js` calls, over the WIT
// imports of the plugin worlds (sluice:plugin/log, wasi:cli/environment, wasi:filesystem,
// wasi:http), and the wrappers that export a plugin's functions. Import this only from the file
// jco componentize builds; everything it reaches is still granted per task by the engine.

import { log as witLog, progress as witProgress } from 'sluice:plugin/log@0.1.0';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingBody, OutgoingRequest, RequestOptions } from 'wasi:http/types@0.2.12';

import { Config, Failed, InvalidConfig, Report, Variables, describe, installHost } from './index.js';

const CHUNK = 64n * 1024n;
const BODY_LIMIT = 8 * 1024 * 1024;

/** The preopened directory holding the guest path `path`, and the path relative to it. */
function resolve(path) {
  const clean = String(path).replace(/\/+$/, '') || '/';
  let best = null;
  for (const [dir, guest] of getDirectories()) {
    const root = guest.replace(/\/+$/, '') || '/';
    const inside = clean === root || clean.startsWith(root === '/' ? '/' : `${root}/`);
    if (inside && (best === null || root.length > best.root.length)) best = { dir, root };
  }
  if (best === null) {
    throw new Failed(
      `cannot reach ${path}: it is not inside a directory granted to the task ` +
        '(grants.dirs = [{ host = "...", guest = "/dir", access = "rw" }])',
    );
  }
  const rest = clean.slice(best.root.length).replace(/^\/+/, '') || '.';
  return { dir: best.dir, rest };
}

function fsError(verb, path, e) {
  const code = e?.payload ?? e?.message ?? String(e);
  const hint = ['access', 'not-permitted', 'read-only'].includes(code)
    ? ' (is the directory granted read-write? access = "rw")'
    : '';
  return new Failed(`cannot ${verb} ${path}: ${code}${hint}`);
}

function open(path, openFlags, flags, verb) {
  const { dir, rest } = resolve(path);
  try {
    return dir.openAt({ symlinkFollow: false }, rest, openFlags, flags);
  } catch (e) {
    throw fsError(verb, path, e);
  }
}

function readFile(path) {
  const file = open(path, {}, { read: true }, 'read');
  const parts = [];
  let offset = 0n;
  try {
    for (;;) {
      const [chunk, end] = file.read(CHUNK, offset);
      parts.push(chunk);
      offset += BigInt(chunk.length);
      if (end || chunk.length === 0) break;
    }
  } catch (e) {
    throw fsError('read', path, e);
  }
  return concat(parts);
}

/** Creates the directories above `path` that are missing (as Python's helper does). */
function makeParents(path) {
  const { dir, rest } = resolve(path);
  const parts = rest.split('/').slice(0, -1);
  for (let i = 1; i <= parts.length; i++) {
    try {
      dir.createDirectoryAt(parts.slice(0, i).join('/'));
    } catch (e) {
      if (e?.payload !== 'exist') throw fsError('create the directories of', path, e);
    }
  }
}

function writeFile(path, bytes) {
  makeParents(path);
  const file = open(path, { create: true, truncate: true }, { write: true }, 'write');
  try {
    let offset = 0n;
    while (offset < BigInt(bytes.length)) {
      offset += file.write(bytes.subarray(Number(offset)), offset);
    }
  } catch (e) {
    throw fsError('write', path, e);
  }
}

function listDir(path) {
  const dir = open(path, { directory: true }, { read: true }, 'list');
  const names = [];
  try {
    const entries = dir.readDirectory();
    for (let e = entries.readDirectoryEntry(); e !== undefined; e = entries.readDirectoryEntry()) {
      names.push(e.name);
    }
  } catch (e) {
    throw fsError('list', path, e);
  }
  return names;
}

function isDir(path) {
  const { dir, rest } = resolve(path);
  try {
    return dir.statAt({ symlinkFollow: false }, rest).type === 'directory';
  } catch {
    return false;
  }
}

function environment() {
  return Object.fromEntries(getEnvironment());
}

const METHODS = ['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch'];

function httpError(code) {
  const tag = code?.tag ?? String(code);
  const words = {
    'HTTP-request-denied':
      'the engine refused the request: this host is not granted to the task ' +
      '(add it to the task\'s grants: grants.hosts = ["HOST"])',
    'connection-refused': 'connection refused',
    'DNS-error': 'the host name could not be resolved',
    'connection-timeout': 'connection timed out',
    'HTTP-response-timeout': 'timed out waiting for the response',
  };
  return words[tag] ?? tag;
}

function http({ method = 'GET', url, headers = {}, body, json, timeout }) {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Failed(`\`${url}\` is not an absolute http:// or https:// URL`);
  }
  const sent = { ...headers };
  if (json !== undefined) {
    body = JSON.stringify(json);
    sent['content-type'] ??= 'application/json';
  }
  if (typeof body === 'string') body = new TextEncoder().encode(body);
  const encoder = new TextEncoder();
  const request = new OutgoingRequest(
    Fields.fromList(Object.entries(sent).map(([k, v]) => [k.toLowerCase(), encoder.encode(String(v))])),
  );
  const lower = method.toLowerCase();
  request.setMethod(METHODS.includes(lower) ? { tag: lower } : { tag: 'other', val: method });
  request.setScheme({ tag: parsed.protocol === 'https:' ? 'HTTPS' : 'HTTP' });
  request.setAuthority(parsed.host);
  request.setPathWithQuery(`${parsed.pathname}${parsed.search}`);
  const outgoing = request.body();
  if (body && body.length > 0) {
    const stream = outgoing.write();
    for (let i = 0; i < body.length; i += 4096) stream.blockingWriteAndFlush(body.subarray(i, i + 4096));
    stream[Symbol.dispose]();
  }
  let options;
  if (timeout !== undefined) {
    const nanos = BigInt(Math.round(timeout * 1e9));
    options = new RequestOptions();
    options.setConnectTimeout(nanos);
    options.setFirstByteTimeout(nanos);
    options.setBetweenBytesTimeout(nanos);
  }
  let pending;
  try {
    pending = handle(request, options);
    OutgoingBody.finish(outgoing, undefined);
  } catch (e) {
    throw new Failed(`${method} ${url}: ${httpError(e.payload ?? e)}`);
  }
  pending.subscribe().block();
  const got = pending.get();
  if (got === undefined || got.tag === 'err') throw new Failed(`${method} ${url}: the response was already taken`);
  if (got.val.tag === 'err') throw new Failed(`${method} ${url}: ${httpError(got.val.val)}`);
  const response = got.val.val;
  const decoder = new TextDecoder();
  const responseHeaders = response.headers().entries().map(([k, v]) => [k, decoder.decode(v)]);
  const status = response.status();
  const incoming = response.consume();
  const stream = incoming.stream();
  const parts = [];
  let size = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(CHUNK);
    } catch (e) {
      if (e.payload?.tag === 'closed') break;
      throw new Failed(`reading the response of ${url} failed: ${e.payload?.tag ?? e}`);
    }
    parts.push(chunk);
    size += chunk.length;
    if (size > BODY_LIMIT) throw new Failed(`the response of ${url} is larger than ${BODY_LIMIT} bytes`);
  }
  stream[Symbol.dispose]();
  incoming[Symbol.dispose]();
  return { status, headers: responseHeaders, body: concat(parts) };
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

installHost({
  log: (level, message, fields) => witLog(level, message, fields),
  progress: (percent, message) => witProgress(percent, message),
  environment,
  readFile,
  writeFile,
  listDir,
  isDir,
  http,
});

/** A thrown value as the WIT `error` an export returns: the plugin's own failure, in words. */
function witError(e) {
  if (e instanceof InvalidConfig) return { tag: 'invalid-config', val: e.message };
  if (e instanceof Failed) return { tag: 'failed', val: e.message };
  return { tag: 'failed', val: describe(e) };
}

/** `call()` then `convert`, with any failure (also of an async function) as the WIT error. */
function guarded(call, convert = (v) => v) {
  let out;
  try {
    out = call();
  } catch (e) {
    throw witError(e);
  }
  if (typeof out?.then === 'function') {
    return out.then(
      (v) => {
        try {
          return convert(v);
        } catch (e) {
          throw witError(e);
        }
      },
      (e) => {
        throw witError(e);
      },
    );
  }
  try {
    return convert(out);
  } catch (e) {
    throw witError(e);
  }
}

function input(config, context, variables) {
  return { config: Config.fromJson(config), context, variables: new Variables(variables) };
}

/** The `task` export for `run(input) -> Report` (or nothing). */
export function exportTask(run) {
  return {
    run: (wit) =>
      guarded(
        () => run(input(wit.config, wit.context, wit.variables)),
        (report = new Report()) => {
          if (!(report instanceof Report)) throw new Failed('the task returned something other than a Report');
          return { warnings: report.warnings, outputs: report.outputs };
        },
      ),
  };
}

/** The `gate` export for `evaluate(input) -> healthy() | unhealthy(reason)`. */
export function exportGate(evaluate) {
  return {
    evaluate: (config, context, variables) =>
      guarded(
        () => evaluate(input(config, context, variables)),
        (health) => {
          if (health?.healthy === true) return { tag: 'healthy' };
          if (health?.healthy === false) return { tag: 'unhealthy', val: health.reason };
          throw new Failed('the gate returned something other than healthy() or unhealthy(reason)');
        },
      ),
  };
}

/** The `artifactSource` export for `listVersions(config)` and `fetch(config, id, destination)`. */
export function exportArtifactSource({ listVersions, fetch }) {
  const wit = (v) => ({
    id: String(v.id),
    created: v.created === undefined ? undefined : BigInt(v.created),
    branch: v.branch,
    tags: v.tags ?? [],
    commit: v.commit,
    metadata: Object.entries(v.metadata ?? {}),
  });
  return {
    listVersions: (config) =>
      guarded(
        () => listVersions(Config.fromJson(config)),
        (versions) => versions.map(wit),
      ),
    fetch: (config, version, destination) =>
      guarded(() => fetch(Config.fromJson(config), version, destination), wit),
  };
}
