/**
 * The client's defaults, in one place: the client reads them, and the bench's WebSocket
 * producers keep the same in-flight window so they load the daemon as a real producer does.
 */
export const CLIENT_DEFAULTS = {
  maxInflightOps: 20_000,
  maxOpsPerFrame: 1000,
  reconnectBaseMs: 100,
  reconnectMaxMs: 5000,
  connectTimeoutMs: 10_000,
  pingIntervalMs: 15_000,
} as const;
