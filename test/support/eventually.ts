/**
 * Polls until `probe` returns something other than undefined, and says how long that
 * took (ms). For changes the API sees within a documented window, such as a revoked
 * token while other processes may still hold it in their credential cache.
 */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  what = "the condition",
  intervalMs = 25,
): Promise<{ value: T; afterMs: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return { value, afterMs: Date.now() - started };
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The value `probe` eventually returns; its errors (a server still starting) count as "not yet". */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 400_000,
): Promise<T> {
  return (await eventually(() => probe().catch(() => undefined), timeoutMs, what, 200)).value;
}
