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
  session_id: string;
  state: JsonObject;
}

export interface EventBody {
  session_id: string;
  name: string;
  category?: string;
  group?: string;
  labels?: string[];
  message?: string;
  data?: JsonObject;
  stacktrace?: string[] | string;
  exception_type?: string;
  exception_msg?: string;
  source_file?: string;
  source_line?: number;
  source_function?: string;
}

export interface MetricBody {
  session_id: string;
  name: string;
  value: number;
  type: MetricType;
  delta?: number;
  count?: number;
  unit?: string;
  tags?: string[];
  metadata?: JsonObject;
}

export interface SessionBody {
  session_id: string;
}

export interface CrashBody {
  session_id: string;
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

export type Op = { [K in OpKind]: { kind: K; body: OpBodies[K] } }[OpKind];

/** Event fields that are sent upstream as they are (everything but session_id). */
export const EVENT_FIELDS = [
  'name',
  'category',
  'group',
  'labels',
  'message',
  'data',
  'stacktrace',
  'exception_type',
  'exception_msg',
  'source_file',
  'source_line',
  'source_function',
] as const;
