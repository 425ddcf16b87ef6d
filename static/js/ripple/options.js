/**
 * RippleSocket's options (docs/client.md, "Options"): the defaults, and the
 * browser objects a test or another host may replace.
 */

import { checkClientIdPrefix } from './outbox.js';
import { defaultSessionStorage, pickTransports } from './transport.js';

export const DEFAULTS = Object.freeze({
  backoffBaseMs: 500,
  backoffMaxMs: 30000,
  backoffFloorMs: 0,
  downBackoffMaxMs: 2000,
  downFastForMs: 120000,
  quickReconnectMs: 1000,
  maxAttempts: 20,
  stableAfterMs: 5000,
  connectTimeoutMs: 15000,
  maxQueue: 100,
  heartbeatIntervalMs: 20000,
  heartbeatTimeoutMs: 10000,
  clientIdPrefix: '',
  fallbackAfterFailures: 3,
  fastFailureMs: 3000,
  wsRetryMs: 60000,
  healthPath: '/healthz',
  healthTimeoutMs: 2000,
});

/** The option if given, else the global of that name, else null (no global in node or a worker). */
function injected(options, name) {
  return options[name] !== undefined ? options[name] : (globalThis[name] ?? null);
}

/**
 * The constructor's options resolved: `settings` (DEFAULTS with what was
 * given, null counting as not given), `transports` as `{name, Socket}`, and
 * `storage`, `window`, `document`, `navigator`, `crypto`, `fetch`, `random`.
 * Throws a TypeError for an unusable option.
 */
export function resolveOptions(options) {
  const settings = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    if (options[key] !== undefined && options[key] !== null) settings[key] = options[key];
  }
  checkClientIdPrefix(settings.clientIdPrefix);
  return {
    settings,
    transports: pickTransports(options),
    storage: options.sessionStorage !== undefined ? options.sessionStorage : defaultSessionStorage(),
    window: injected(options, 'window'),
    document: injected(options, 'document'),
    navigator: injected(options, 'navigator'),
    crypto: injected(options, 'crypto'),
    fetch: injected(options, 'fetch'),
    random: options.random ?? Math.random,
  };
}
