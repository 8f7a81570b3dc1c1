/**
 * The TypeScript client of datacat-daemon's WebSocket protocol (docs/protocol.md).
 *
 * ```ts
 * const client = connect({ url: 'ws://127.0.0.1:8079' });
 * const session = await client.register({ product: 'game', version: '1.2' });
 * session.logEvent('level_start', { data: { level: 3 } });
 * await session.end();
 * await client.close();
 * ```
 */
export { connect, Client } from './client.js';
export { Session } from './session.js';
export { DataCatError } from './errors.js';
export { Backoff } from './backoff.js';
export { buildWsUrl } from './url.js';
export { CLOSE_CODES, CLIENT_ID_PATTERN } from './wire.js';
export type { DataCatErrorCode, DaemonErrorCode, ClientErrorCode, DataCatErrorDetails } from './errors.js';
export type { BackoffOptions } from './backoff.js';
export type {
  ClientOptions,
  ClientEvents,
  ClientStats,
  CloseOptions,
  ConnectedEvent,
  DisconnectedEvent,
  RemapEvent,
  RegisterOptions,
  EventOptions,
  MetricOptions,
  GaugeOptions,
  CounterOptions,
  HistogramOptions,
  TimerLogOptions,
  TimerOptions,
  Timer,
  ExceptionOptions,
  SessionDetails,
} from './types.js';
export type {
  OpKind,
  MetricType,
  WireOp,
  ClientFrame,
  OpBody,
  OpsFrame,
  BatchFrame,
  GetSessionFrame,
  DaemonFrame,
  WelcomeFrame,
  AckFrame,
  RemapFrame,
  SessionFrame,
  ErrorFrame,
  OpError,
  OpErrorTuple,
  Registered,
} from './wire.js';
