export interface RetryPolicy {
  /** Attempts before a row goes dead (the first try counts). */
  maxAttempts: number;
  /** The backoff before the second attempt: it doubles after each failure... */
  baseDelayMs: number;
  /** ...up to this cap. */
  maxDelayMs: number;
}

/**
 * "Full jitter" exponential backoff: a uniformly random wait in [0, min(cap, base * 2^(attempt-1))], so workers
 * that failed together do not retry together. A destination's own Retry-After (retryAfterMs) is a floor.
 */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random, retryAfterMs?: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(Math.max(attempt - 1, 0), 52));
  const jittered = Math.floor(random() * ceiling);
  return retryAfterMs !== undefined ? Math.max(jittered, retryAfterMs) : jittered;
}
