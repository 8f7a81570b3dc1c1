import { pino, type Logger } from 'pino';
import type { LogLevel } from './config/index.js';

export type { Logger };

/**
 * Structured logs on stderr. Deliberately quiet at `info`: startup, upstream up/down transitions
 * and failures only. DataCat's Python client pipes the daemon's stdout and stderr and never
 * reads them, so a chatty daemon would eventually block on a full pipe.
 */
export function createLogger(level: LogLevel): Logger {
  const destination = pino.destination({ dest: 2, sync: false });
  // A client that started the daemon may die with our stderr pipe (EPIPE): logging must never
  // take the daemon down, least of all while it persists that client's sessions.
  destination.on('error', () => undefined);
  return pino({ level, base: { pid: process.pid } }, destination);
}

export const silentLogger: Logger = pino({ level: 'silent' });
