/**
 * One error type for everything a client can get wrong, shared by the HTTP API and the
 * WebSocket protocol so that both report the same codes for the same mistakes.
 */
export type ErrorCode =
  | 'bad_request' // the body or frame is not what the endpoint takes (not JSON, not an object)
  | 'invalid_field' // a field is missing or has the wrong type or value
  | 'too_deep' // nesting deeper than max_depth
  | 'too_long' // a string longer than its limit
  | 'forbidden_key' // __proto__, constructor or prototype used as an object key
  | 'unknown_op' // an op kind this daemon does not know
  | 'unknown_session' // no session has that id
  | 'session_ended' // the session has ended or crashed; it takes no more ops
  | 'payload_too_large' // body or frame over its byte limit
  | 'too_many_ops' // more ops in one frame than max_ops_per_frame
  | 'unauthorized' // missing or wrong auth token
  | 'not_found' // no such path
  | 'method_not_allowed'
  | 'queue_full' // the outbox is full and overflow is "block"
  | 'dropped' // discarded on arrival by overflow "drop_newest", as the operator chose (counted): not persisted
  | 'unavailable' // the daemon could not persist the op (disk error, worker failure, shutdown)
  | 'shutting_down' // HTTP: a request that arrived after the daemon began to stop (SIGTERM); not persisted
  | 'internal';

/** The HTTP status each code answers with (CONTRACT §2). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  invalid_field: 400,
  too_deep: 400,
  too_long: 400,
  forbidden_key: 400,
  unknown_op: 400,
  unknown_session: 404,
  session_ended: 400,
  payload_too_large: 413,
  too_many_ops: 413,
  unauthorized: 401,
  not_found: 404,
  method_not_allowed: 405,
  queue_full: 503,
  // Not 200: a 200 means persisted (CONTRACT §2, §5). The outbox is full, as for queue_full.
  dropped: 503,
  unavailable: 503,
  shutting_down: 503,
  internal: 500,
};

export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** `{error, details}`: the JSON shape every HTTP error answers with, also used per op over WebSocket. */
export interface ErrorBody {
  error: ErrorCode;
  details: string;
}

export function errorBody(err: unknown): ErrorBody {
  if (err instanceof ProtocolError) return { error: err.code, details: err.message };
  return { error: 'internal', details: err instanceof Error ? err.message : String(err) };
}
