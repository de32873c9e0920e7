// Type declarations of wsmq-client (hand-written; the module is wsmq-client.js).
// Reference: docs/client-js.md in the wsmq repository.

/** The subprotocol of the v1 protocol: "wsmq.v1". */
export declare const SUBPROTOCOL: "wsmq.v1";

/** The least time between two `/refresh` of a client, in ms (1000). */
export declare const MIN_REFRESH_INTERVAL: number;

/** `[x-token, x-access-token]`. */
export type Tokens = readonly [xToken: string, accessToken: string];

/** Called at the first connect, after a 4401/4403 close or an HTTP 401/403 handshake, and on
 * `expiring`. A rejection is transient: an `error` event (`TokensFailed`), a backoff, another
 * call. Rejecting with `UnauthorizedError` ends the client with `AuthenticationFailed`. */
export type TokenSource = () => Promise<Tokens> | Tokens;

/** A WebSocket constructor: a browser's, Node's global one (Node >= 22), or the `ws` package. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[], options?: { headers?: Record<string, string> }): WebSocketLike;
}

/** What the client uses of a WebSocket. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

export interface BackoffOptions {
  /** First delay in milliseconds (default 100). */
  base?: number;
  /** Largest delay in milliseconds (default 10000). */
  cap?: number;
  /** Random source in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
}

export interface ConnectOptions {
  /** `async () => [xToken, accessToken]` (required). */
  tokens: TokenSource;
  /** No subprotocol: the original protocol, receive only (default false). */
  legacy?: boolean;
  /** Remember this many ids per queue and drop their redeliveries (default 0: off). */
  dedupe?: number;
  /** Reconnect delays: doubling from `base` to `cap` ms, each jittered in [d/2, d]. */
  backoff?: BackoffOptions | Backoff;
  /** Try the nodes in a random order (default true); false: in the given order. */
  shuffle?: boolean;
  /** The WebSocket constructor (default `globalThis.WebSocket`; in Node < 22 pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** "auto" (default): handshake headers with the `ws` package, else the first frame
   * `/auth <x-token> <x-access-token>`; "headers" or "frame" to choose. */
  auth?: "auto" | "headers" | "frame";
  /** Milliseconds a connection attempt (handshake and, with frame auth, `authenticated`)
   * may take before it counts as failed (default 10000). */
  connectTimeout?: number;
}

export interface SubscribeOptions {
  /** How many deliveries of this queue the handler runs at once (default 1: in order). */
  concurrency?: number;
  /** Subscribe as this device (`^[A-Za-z0-9_-]{1,64}$`, stable per install): every message of
   * the queue reaches the device's own inbox (`/subscribe/<queue> device=<id>`). */
  device?: string;
}

export interface AckOptions {
  /** Wait for the server's `acked` (true) or an error / a lost connection (false). */
  confirm?: boolean;
}

/** One delivered message (frozen). */
export declare class Delivery {
  private constructor();
  readonly queue: string;
  /** The RSMQ id ("" in legacy mode). */
  readonly id: string;
  /** Receive count (0 in legacy mode). */
  readonly rc: number;
  /** When it was sent, epoch ms (0 in legacy mode). */
  readonly sent: number;
  /** The body, verbatim. */
  readonly message: string;
  /** Which connection of the client delivered it (1, 2, ...). */
  readonly generation: number;
  /** Delete the message. Acks of one event-loop turn go out as one bulk frame per queue.
   * Without `confirm`: true once queued, false if the connection that holds it is gone (it
   * will be delivered again). Legacy mode: does nothing, true. */
  ack(options?: AckOptions): Promise<boolean>;
  /** Give it back, visible again at once or after `delay` whole seconds (0..9999999):
   * true on `nacked`, false on an error or a lost connection. Rejects in legacy mode. */
  nack(delay?: number): Promise<boolean>;
  /** Keep it hidden `seconds` (whole, >= 1) from now: true on `extended`, false on an error
   * or a lost connection. Rejects in legacy mode. */
  extend(seconds: number): Promise<boolean>;
}

export type Handler = (delivery: Delivery) => unknown | Promise<unknown>;

/** A subscription: renewed after every reconnect until unsubscribed. */
export declare class Subscription {
  private constructor();
  readonly queue: string;
  /** The device it subscribes as, or null. */
  readonly device: string | null;
  /** False once unsubscribed, refused (not `unavailable`: that is retried), left, or the client
   * ended. */
  readonly active: boolean;
  /** Whether a node answered `subscribed` at least once. */
  readonly subscribed: boolean;
  /** One-shot: resolves at the first `subscribed` reply (each later one is a `subscribed`
   * event); rejects with `CommandFailed` if the server refused it for good (forbidden,
   * invalid_queue, too_many_subscriptions, ...) or with the error that ended the client. */
  readonly ready: Promise<void>;
  /** Send `/unsubscribe/<queue>`: no more deliveries; unacked ones are released. */
  unsubscribe(): Promise<void>;
}

export interface ClientEvents {
  /** A connection attempt to `node` starts. */
  connecting: (node: string) => void;
  /** Connected (and, with frame auth, authenticated); subscriptions are being renewed. */
  connected: (node: string) => void;
  /** An attempt or a connection ended: its close code (1006 when there was no close frame,
   * e.g. a refused connection) and reason ("HTTP 401", "connect timeout", or the server's). */
  disconnected: (code: number, reason: string, node: string) => void;
  /** The client waits `delayMs` before the next attempt (after close `code`; 0: tokens()
   * failed). */
  reconnecting: (delayMs: number, code: number) => void;
  /** A node answered `subscribed` (on every (re)subscribe); `device` null for a plain one. */
  subscribed: (queue: string, device: string | null, node: string) => void;
  /** Every delivery handed to the application (before its subscription's handler). */
  message: (delivery: Delivery) => void;
  /** `error.fatal` true: the client stopped. Otherwise: a handler failed (`HandlerFailed`),
   * a server error frame nobody waited for or a refused subscribe (`CommandFailed`;
   * `unavailable` is retried), or tokens() failed (`TokensFailed`, retried). */
  error: (error: ClientError) => void;
}

export declare class Client {
  constructor(urls: string | readonly string[], options: ConnectOptions);
  /** Resolves at the first connection; rejects with the error that ends the client. */
  readonly ready: Promise<void>;
  /** Whether a socket is open (and authenticated) right now. */
  readonly connected: boolean;
  /** The error that ended the client, or null. */
  readonly error: ClientError | null;
  /** Whether the handshake carries the tokens as headers (else the first frame `/auth`). */
  readonly headerAuth: boolean;
  /** Receive `queue`; `handler` runs for each delivery. Throws `ClientError` for an invalid
   * name, a second subscription of the same queue, or a second one in legacy mode. */
  subscribe(queue: string, handler?: Handler, options?: SubscribeOptions): Subscription;
  /** `/send/<queue> <message>`: resolves with the new message's id. Waits for a connection;
   * rejects with `CommandFailed` (forbidden, queue_not_found, message_too_long, ...) or
   * `ConnectionClosed` (the connection closed before the reply: it may have been queued). */
  send(queue: string, message: string): Promise<string>;
  /** `/leave/<queue> device=<device>`: remove that device's inbox of `queue` now, its messages
   * with it; resolves true if there was one. This client's subscription to `queue` as that
   * device ends first. Rejects with `CommandFailed` (device_in_use, ...) or `ConnectionClosed`. */
  leave(queue: string, device: string): Promise<boolean>;
  /** Listen; returns a function that removes the listener. */
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void;
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): void;
  /** Flush the acks of this turn, close the socket (1000), stop reconnecting. */
  close(): Promise<void>;
}

/** Create a client; it starts connecting at once (in a microtask). */
export declare function connect(urls: string | readonly string[], options: ConnectOptions): Client;
export default connect;

/** Delays `base, 2·base, ...` up to `cap` ms, each jittered in [d/2, d]. */
export declare class Backoff {
  constructor(options?: BackoffOptions);
  base: number;
  cap: number;
  attempt: number;
  next(): number;
  reset(): void;
}

/** What the client does after a close code. */
export declare function afterClose(code: number): "next_node_now" | "new_tokens" | "back_off" | "fatal";

export declare class ClientError extends Error {
  /** "client_error", "authentication_failed", "unauthorized", "tokens_failed",
   * "connection_closed", "client_closed", "command_failed", "handler_failed". */
  code: string;
  /** True on the error that ended the client. */
  fatal: boolean;
}

/** The server refused the credentials, even fresh ones from tokens(); or tokens() rejected
 * with `UnauthorizedError` (the `cause`). */
export declare class AuthenticationFailed extends ClientError {}

/** Throw it from tokens() when there will be no tokens (logged out): ends the client. */
export declare class UnauthorizedError extends ClientError {
  constructor(message?: string, options?: { cause?: unknown });
}

/** Not fatal: tokens() rejected (`cause`); it is called again after a backoff. */
export declare class TokensFailed extends ClientError {
  constructor(cause: unknown);
  cause: unknown;
}

/** A close the client does not retry (1002, 1007, 1008, 1009), or a command whose connection
 * closed before its reply. */
export declare class ConnectionClosed extends ClientError {
  constructor(message: string, closeCode?: number | null, reason?: string);
  closeCode: number | null;
  reason: string;
}

/** The application closed the client: a command cut short by close(), or made after it. */
export declare class ClientClosed extends ConnectionClosed {
  constructor(message?: string);
}

/** An `error` frame answered a command. */
export declare class CommandFailed extends ClientError {
  constructor(errorCode: string, detail: string, queue?: string | null);
  /** The wire code: forbidden, queue_not_found, message_too_long, refresh_failed, ... */
  errorCode: string;
  detail: string;
  queue: string | null;
}

/** A subscription's handler threw or rejected; the delivery was not settled. */
export declare class HandlerFailed extends ClientError {
  constructor(delivery: Delivery, cause: unknown);
  delivery: Delivery;
  cause: unknown;
}
