/**
 * The ops a client can send, over HTTP (one per request) or WebSocket (many per frame), in
 * the normalized form validate.ts produces: only known fields, correct types, limits checked.
 * Field names are DataCat's, so an HTTP body is an op as it is.
 */
export const OP_KINDS = [
  'register',
  'state',
  'event',
  'metric',
  'heartbeat',
  'pause_heartbeat',
  'resume_heartbeat',
  'end',
  'crash',
] as const;
export type OpKind = (typeof OP_KINDS)[number];

export const METRIC_TYPES = ['gauge', 'counter', 'histogram', 'timer'] as const;
export type MetricType = (typeof METRIC_TYPES)[number];

export type JsonObject = Record<string, unknown>;

export interface RegisterBody {
  product: string;
  version: string;
  parent_pid?: number;
  hostname?: string;
  machine_id?: string;
}

export interface StateBody {
  state: JsonObject;
}

/** An event exactly as it goes upstream (CONTRACT §3, without the timestamp added at send time). */
export interface EventBody {
  name: string;
  /** The logger name (DataCat's Python client), or the level when the client sent none. */
  category?: string;
  /** debug, info, warning, error or critical, as DataCat's Python client sends it; kept as sent. */
  level?: string;
  group?: string;
  labels?: string[];
  message?: string;
  data?: JsonObject;
  /** Always a list of lines: a string stack trace is split at validation (DataCat's server and Go client type it so). */
  stacktrace?: string[];
  exception_type?: string;
  exception_msg?: string;
  source_file?: string;
  source_line?: number;
  source_function?: string;
}

export interface MetricBody {
  name: string;
  value: number;
  type: MetricType;
  /** Between client and daemon only: a counter increment, aggregated by the actor. */
  delta?: number;
  count?: number;
  unit?: string;
  tags?: string[];
  metadata?: JsonObject;
}

export type SessionBody = Record<string, never>;

export interface CrashBody {
  reason?: string;
}

export interface OpBodies {
  register: RegisterBody;
  state: StateBody;
  event: EventBody;
  metric: MetricBody;
  heartbeat: SessionBody;
  pause_heartbeat: SessionBody;
  resume_heartbeat: SessionBody;
  end: SessionBody;
  crash: CrashBody;
}

export type SessionOpKind = Exclude<OpKind, 'register'>;

/**
 * A validated op. The session id travels beside the body, not in it, so a body is what the
 * actor keeps and sends upstream as it is (no copy per op to strip the id).
 */
export type RegisterOp = { kind: 'register'; body: RegisterBody };
export type SessionOp = { [K in SessionOpKind]: { kind: K; session_id: string; body: OpBodies[K] } }[SessionOpKind];
export type Op = RegisterOp | SessionOp;
