import { pino, type Logger } from 'pino';
import type { LogLevel } from './config/index.js';

export type { Logger };

/**
 * Structured logs on stderr. Deliberately quiet at `info`: startup, upstream up/down transitions
 * and failures only. DataCat's Python client pipes the daemon's stdout and stderr and never
 * reads them, so a chatty daemon would eventually block on a full pipe.
 */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: false }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
