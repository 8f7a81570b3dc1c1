/**
 * The limits the fuzzed daemon runs with: small, so that every limit case is cheap to build and
 * to send (a string past max_string_length is 4 KB, not 64 KB).
 */
export const LIMITS = {
  max_body_bytes: 64 * 1024,
  max_frame_bytes: 64 * 1024,
  max_ops_per_frame: 200,
  max_depth: 16,
  max_string_length: 4096,
  max_name_length: 64,
} as const;

/** The error codes of README.md "Errors" / docs/protocol.md "Errors" that the fuzzer expects. */
export type ErrorCode =
  | 'bad_request'
  | 'invalid_field'
  | 'too_deep'
  | 'too_long'
  | 'forbidden_key'
  | 'unknown_op'
  | 'unknown_session'
  | 'session_ended'
  | 'too_many_ops'
  | 'payload_too_large'
  | 'not_found'
  | 'method_not_allowed';

/** README.md "Errors": the HTTP status of each code (written out here, not imported from src/). */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  invalid_field: 400,
  too_deep: 400,
  too_long: 400,
  forbidden_key: 400,
  unknown_op: 400,
  session_ended: 400,
  unknown_session: 404,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  too_many_ops: 413,
};

/** docs/protocol.md "Errors": WebSocket close codes. */
export const CLOSE = {
  textFrame: 1003,
  notMessagePack: 1007,
  notAFrame: 1008,
  tooLarge: 1009,
} as const;
