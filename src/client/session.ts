import { DataCatError } from './errors.js';
import { exceptionFields } from './exception.js';
import { jsonForm } from './json-values.js';
import type { Settle } from './op-buffer.js';
import type {
  CounterOptions,
  EventOptions,
  ExceptionOptions,
  GaugeOptions,
  HistogramOptions,
  MetricOptions,
  SessionDetails,
  Timer,
  TimerLogOptions,
  TimerOptions,
} from './types.js';
import type { OpBody, OpKind } from './wire.js';

/** What a Session needs from its Client; kept out of the Client's public surface. */
export interface SessionHost {
  /** Queues an op of a session; false past the high-water mark. Throws once the client is closed. */
  enqueue(body: OpBody, sessionId: string, settle?: Settle): boolean;
  /** A get_session read (after the ops queued so far are acked). */
  read(sessionId: string): Promise<SessionDetails>;
  /** The session ended or crashed: the client stops tracking it. */
  forget(session: Session): void;
}

/** Lets the Client record a remap without making it part of the public API. */
export const SET_SERVER_ID = Symbol('setServerId');

/**
 * One registered session. Method names are DataCat's Python client's, in camelCase; wire fields
 * stay snake_case. The high-rate methods queue one op and return like `stream.write`: false
 * once the client holds more than its high-water mark (then `await client.waitForCapacity()`).
 *
 * Values (state, data, metadata) take their JSON form (json-values.ts: undefined left out, Dates
 * as ISO strings). They are encoded when their frame is built, usually later in the same
 * event-loop turn, and again if the op has to be resent: do not mutate an object after passing
 * it, as with a Buffer given to `socket.write`.
 */
export class Session {
  private serverIdValue: string | null = null;
  private finishing: Promise<void> | undefined;

  constructor(
    private readonly host: SessionHost,
    /** The id the daemon answered at registration (a server id, or `local-session-...` offline). Ops always use it: both ids keep working after a remap. */
    readonly id: string,
  ) {}

  /** The DataCat server's id, once the daemon reports a remap of this (local) session. */
  get serverId(): string | null {
    return this.serverIdValue;
  }

  /** True once end() or crash() was called; later ops throw. */
  get ended(): boolean {
    return this.finishing !== undefined;
  }

  /** @internal */
  [SET_SERVER_ID](serverId: string): void {
    this.serverIdValue = serverId;
  }

  /** Deep-merges `state` into the session's state; `null` deletes a key. */
  updateState(state: Record<string, unknown>): boolean {
    const w = this.op('state');
    w['state'] = jsonForm(state);
    return this.host.enqueue(w, this.id);
  }

  logEvent(name: string, opts: EventOptions = {}): boolean {
    const w = this.op('event');
    w['name'] = name;
    put(w, 'category', opts.category);
    put(w, 'level', opts.level);
    put(w, 'group', opts.group);
    put(w, 'labels', opts.labels);
    put(w, 'message', opts.message);
    put(w, 'data', jsonForm(opts.data));
    put(w, 'stacktrace', opts.stacktrace);
    put(w, 'exception_type', opts.exceptionType);
    put(w, 'exception_msg', opts.exceptionMsg);
    put(w, 'source_file', opts.sourceFile);
    put(w, 'source_line', opts.sourceLine);
    put(w, 'source_function', opts.sourceFunction);
    return this.host.enqueue(w, this.id);
  }

  logMetric(name: string, value: number, opts: MetricOptions = {}): boolean {
    const w = this.op('metric');
    w['name'] = name;
    w['value'] = value;
    put(w, 'type', opts.type);
    put(w, 'delta', opts.delta);
    put(w, 'count', opts.count);
    put(w, 'unit', opts.unit);
    put(w, 'tags', opts.tags);
    put(w, 'metadata', jsonForm(opts.metadata));
    return this.host.enqueue(w, this.id);
  }

  logGauge(name: string, value: number, opts: GaugeOptions = {}): boolean {
    return this.logMetric(name, value, { type: 'gauge', tags: opts.tags, unit: opts.unit });
  }

  /** Adds `delta` to a counter; the daemon keeps the running total (value 0 + delta, as DataCat's Python client sends it). */
  logCounter(name: string, delta = 1, opts: CounterOptions = {}): boolean {
    return this.logMetric(name, 0, { type: 'counter', delta, tags: opts.tags });
  }

  logHistogram(name: string, value: number, opts: HistogramOptions = {}): boolean {
    // JSON has no Infinity: the last bound goes as "inf", as DataCat's Python client writes float('inf').
    const buckets = opts.buckets?.map((b) => (b === Infinity ? 'inf' : b));
    const metadata = buckets !== undefined ? { ...opts.metadata, buckets } : opts.metadata;
    return this.logMetric(name, value, { type: 'histogram', unit: opts.unit, tags: opts.tags, metadata });
  }

  logTimer(name: string, seconds: number, opts: TimerLogOptions = {}): boolean {
    return this.logMetric(name, seconds, { type: 'timer', count: opts.count, tags: opts.tags, unit: opts.unit ?? 'seconds' });
  }

  /**
   * Starts a timer; `stop()` logs the elapsed time through logTimer and returns it. Measured with
   * performance.now() (monotonic: wall-clock changes do not distort durations).
   */
  timer(name: string, opts: TimerOptions = {}): Timer {
    this.check();
    const start = performance.now();
    const unit = opts.unit ?? 'seconds';
    let result: number | undefined;
    return {
      stop: (): number => {
        if (result !== undefined) return result;
        const ms = performance.now() - start;
        result = unit === 'milliseconds' ? ms : ms / 1000;
        this.logTimer(name, result, { unit, tags: opts.tags, count: opts.count });
        return result;
      },
    };
  }

  /**
   * Runs `fn` and logs how long it took, whether it returns or throws. The result is always
   * `fn`'s own: if the timer op cannot be logged any more when `fn` settles (the client was
   * closed, or the session ended, meanwhile), the measurement is dropped, not thrown.
   */
  async time<T>(name: string, fn: () => T | PromiseLike<T>, opts: TimerOptions = {}): Promise<T> {
    const timer = this.timer(name, opts);
    const stop = (): void => {
      // stop() throws once the client is closing or the session has ended. From a `finally` that
      // replaced fn's return value (or its exception) with 'closed': work that succeeded looked
      // failed, and the real error was lost.
      try {
        timer.stop();
      } catch {
        // the measurement is dropped, like any op after close()
      }
    };
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      stop();
      throw err;
    }
    stop();
    return result;
  }

  /** Logs a thrown value as an "exception" event (category "error"), with its type, message, stack lines and source location. */
  logException(err: unknown, opts: ExceptionOptions = {}): boolean {
    const f = exceptionFields(err);
    return this.logEvent('exception', {
      category: opts.category ?? 'error',
      group: opts.group,
      labels: opts.labels,
      message: opts.message ?? f.exception_msg,
      data: opts.data,
      stacktrace: f.stacktrace,
      exceptionType: f.exception_type,
      exceptionMsg: f.exception_msg,
      sourceFile: f.source_file,
      sourceLine: f.source_line,
      sourceFunction: f.source_function,
    });
  }

  heartbeat(): boolean {
    return this.host.enqueue(this.op('heartbeat'), this.id);
  }

  /** Stops hang detection (a long operation without heartbeats ahead); DataCat Python's pause_heartbeat_monitoring. */
  pauseHeartbeatMonitoring(): boolean {
    return this.host.enqueue(this.op('pause_heartbeat'), this.id);
  }

  resumeHeartbeatMonitoring(): boolean {
    return this.host.enqueue(this.op('resume_heartbeat'), this.id);
  }

  /** Short for pauseHeartbeatMonitoring (the op's own name). */
  pauseHeartbeat(): boolean {
    return this.pauseHeartbeatMonitoring();
  }

  /** Short for resumeHeartbeatMonitoring. */
  resumeHeartbeat(): boolean {
    return this.resumeHeartbeatMonitoring();
  }

  /** The session as the daemon has persisted it, including every op logged before this call (works offline). */
  getDetails(): Promise<SessionDetails> {
    return this.host.read(this.id);
  }

  /** Ends the session; resolves when the end is acked (persisted). Calling it again (or after crash()) returns the same promise. */
  end(): Promise<void> {
    return this.finishing ?? this.finish(this.op('end'));
  }

  /** Reports that the application crashed (a WebSocket-only op); resolves when persisted. */
  crash(reason?: string): Promise<void> {
    if (this.finishing) return this.finishing;
    const w = this.op('crash');
    put(w, 'reason', reason);
    return this.finish(w);
  }

  private finish(body: OpBody): Promise<void> {
    this.finishing = new Promise<void>((resolve, reject) => {
      this.host.enqueue(body, this.id, (err) => {
        this.host.forget(this);
        if (err) reject(err);
        else resolve();
      });
    });
    // `session.end(); await client.close()` is a natural way to write a shutdown: a rejection
    // nobody awaits (close timed out, or the daemon refused the end) must not become an
    // unhandledRejection that kills the process. Awaiting callers still see it.
    this.finishing.catch(() => undefined);
    return this.finishing;
  }

  /** A new op for this session (`q` and `session_id` travel beside it): `k` first, so ops of one kind share a record shape. */
  private op(k: OpKind): OpBody {
    this.check();
    return { k };
  }

  private check(): void {
    if (this.finishing) throw new DataCatError('session_ended', `session ${this.id} has ended: no more ops can be logged`);
  }
}

function put(w: OpBody, key: string, value: unknown): void {
  // Absent options are left out, not sent as nil: smaller frames, and the daemon's "field absent" path.
  if (value !== undefined) w[key] = value;
}
